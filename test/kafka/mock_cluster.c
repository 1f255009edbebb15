/*
 * mock_cluster.c
 *	  A Kafka cluster for the tests: librdkafka's mock cluster, which speaks
 *	  the Kafka protocol on loopback, driven by commands on stdin.
 *
 *	  mock_cluster [BROKERS]		(default 3)
 *
 * It prints "bootstrap HOST:PORT,..." once the brokers listen, then reads
 * one command a line and answers each with "ok" or "error <why>":
 *
 *	  topic NAME PARTITIONS [REPLICATION]	create a topic
 *	  down BROKER | up BROKER				take a broker down / up (-1: all)
 *	  errors APIKEY CODE [CODE...]			the next requests of that API
 *											(0 = Produce) fail with these
 *											Kafka error codes, in order
 *	  clear APIKEY							forget the errors still pushed
 *	  leader TOPIC PARTITION BROKER			move a partition's leader
 *	  rtt BROKER MS							delay a broker's answers
 *	  quit									(or end of input) stop
 *
 * The tests (test/t/KafkaTest.pm) start it, read the bootstrap line and
 * talk to it over a pipe; it is not part of the extension.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <librdkafka/rdkafka.h>
#include <librdkafka/rdkafka_mock.h>

#define MAX_ERRORS 64

static void
answer(rd_kafka_resp_err_t err)
{
	if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
		printf("ok\n");
	else
		printf("error %s\n", rd_kafka_err2str(err));
	fflush(stdout);
}

static void
fail(const char *fmt,...)
{
	va_list		ap;

	printf("error ");
	va_start(ap, fmt);
	vprintf(fmt, ap);
	va_end(ap);
	printf("\n");
	fflush(stdout);
}

int
main(int argc, char **argv)
{
	int			nbrokers = argc > 1 ? atoi(argv[1]) : 3;
	char		errstr[512];
	rd_kafka_conf_t *conf = rd_kafka_conf_new();
	rd_kafka_t *rk;
	rd_kafka_mock_cluster_t *mc;
	char		line[4096];

	if (nbrokers < 1)
	{
		fprintf(stderr, "usage: %s [BROKERS]\n", argv[0]);
		return 2;
	}
	/* the handle only keeps the cluster's books: it connects nowhere */
	if (rd_kafka_conf_set(conf, "log_level", "3", errstr, sizeof(errstr)) != RD_KAFKA_CONF_OK)
	{
		fprintf(stderr, "%s\n", errstr);
		return 1;
	}
	rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
	if (rk == NULL)
	{
		fprintf(stderr, "rd_kafka_new: %s\n", errstr);
		return 1;
	}
	mc = rd_kafka_mock_cluster_new(rk, nbrokers);
	if (mc == NULL)
	{
		fprintf(stderr, "rd_kafka_mock_cluster_new failed\n");
		return 1;
	}
	printf("bootstrap %s\n", rd_kafka_mock_cluster_bootstraps(mc));
	fflush(stdout);

	while (fgets(line, sizeof(line), stdin))
	{
		char	   *tok[MAX_ERRORS + 3];
		int			n = 0;
		char	   *save = NULL;

		for (char *t = strtok_r(line, " \t\r\n", &save); t && n < (int) (sizeof(tok) / sizeof(tok[0]));
			 t = strtok_r(NULL, " \t\r\n", &save))
			tok[n++] = t;
		if (n == 0)
			continue;
		if (strcmp(tok[0], "quit") == 0)
			break;
		else if (strcmp(tok[0], "topic") == 0 && (n == 3 || n == 4))
			answer(rd_kafka_mock_topic_create(mc, tok[1], atoi(tok[2]), n == 4 ? atoi(tok[3]) : 1));
		else if (strcmp(tok[0], "down") == 0 && n == 2)
			answer(rd_kafka_mock_broker_set_down(mc, atoi(tok[1])));
		else if (strcmp(tok[0], "up") == 0 && n == 2)
			answer(rd_kafka_mock_broker_set_up(mc, atoi(tok[1])));
		else if (strcmp(tok[0], "rtt") == 0 && n == 3)
			answer(rd_kafka_mock_broker_set_rtt(mc, atoi(tok[1]), atoi(tok[2])));
		else if (strcmp(tok[0], "leader") == 0 && n == 4)
			answer(rd_kafka_mock_partition_set_leader(mc, tok[1], atoi(tok[2]), atoi(tok[3])));
		else if (strcmp(tok[0], "errors") == 0 && n >= 3)
		{
			rd_kafka_resp_err_t errs[MAX_ERRORS];
			int			nerr = 0;

			for (int i = 2; i < n && nerr < MAX_ERRORS; i++)
				errs[nerr++] = (rd_kafka_resp_err_t) atoi(tok[i]);
			rd_kafka_mock_push_request_errors_array(mc, (int16_t) atoi(tok[1]), nerr, errs);
			answer(RD_KAFKA_RESP_ERR_NO_ERROR);
		}
		else if (strcmp(tok[0], "clear") == 0 && n == 2)
		{
			rd_kafka_mock_clear_request_errors(mc, (int16_t) atoi(tok[1]));
			answer(RD_KAFKA_RESP_ERR_NO_ERROR);
		}
		else
			fail("unknown command or wrong arguments: %s", tok[0]);
	}
	rd_kafka_mock_cluster_destroy(mc);
	rd_kafka_destroy(rk);
	return 0;
}
