/*
 * report_junit.c
 *	  JUnit XML (as Maven Surefire, Gradle, pytest, Jest's jest-junit and
 *	  most other runners write it) read into the report model.
 *
 * The root is <testsuites> or <testsuite>; a <testsuites> inside
 * <testsuites> adds its suites to the same list, a <testsuite> inside a
 * <testsuite> is a nested suite.  A <testcase>'s first <failure>, <error>
 * or <skipped> child decides its outcome; other children (<system-out>,
 * Surefire's <flakyFailure> of a case that passed on a rerun...) are not
 * read.
 *
 * libxml2 reads the text with XML_PARSE_NONET and neither
 * XML_PARSE_NOENT nor XML_PARSE_DTDLOAD: no network, no entity
 * substitution, no external DTD.  On top of that a document whose DOCTYPE
 * declares any entity is refused as soon as the declaration is read (the
 * SAX entityDecl hook stops the parser): such a report is an attack (a
 * billion laughs, an external entity naming a local file) rather than
 * something a test runner writes.
 *
 * libxml2 builds the document's tree before the model is made of it: a
 * startElementNs hook counts the <testsuite> and <testcase> elements as
 * they are read and stops the parser past the case limit, so that a
 * report over it costs no more than one within it; and each node is freed
 * once read into the model, so that the two do not add up.
 */
#include "core/report_int.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/tree.h>

/* Shared with the SAX hooks through the parser context's _private. */
typedef struct JunitParse
{
	bool		entity_declared;
	long		elements;		/* <testsuite> and <testcase> read so far */
	long		max_elements;
} JunitParse;

/*
 * Any entity declaration, general or parameter, internal or external:
 * refuse the document before the entity can be used.
 */
static void
refuse_entity_decl(void *ctx, const xmlChar *name, int type, const xmlChar *public_id,
				   const xmlChar *system_id, xmlChar *content)
{
	xmlParserCtxtPtr ctxt = (xmlParserCtxtPtr) ctx;

	((JunitParse *) ctxt->_private)->entity_declared = true;
	xmlStopParser(ctxt);
}

static void
refuse_unparsed_entity_decl(void *ctx, const xmlChar *name, const xmlChar *public_id,
							const xmlChar *system_id, const xmlChar *notation)
{
	refuse_entity_decl(ctx, name, 0, public_id, system_id, NULL);
}

/* libxml2's own tree builder, after counting the suites and cases. */
static void
count_element(void *ctx, const xmlChar *localname, const xmlChar *prefix, const xmlChar *uri,
			  int nb_namespaces, const xmlChar **namespaces, int nb_attributes,
			  int nb_defaulted, const xmlChar **attributes)
{
	xmlParserCtxtPtr ctxt = (xmlParserCtxtPtr) ctx;
	JunitParse *state = (JunitParse *) ctxt->_private;

	if ((strcmp((const char *) localname, "testcase") == 0 ||
		 strcmp((const char *) localname, "testsuite") == 0) &&
		++state->elements > state->max_elements)
	{
		xmlStopParser(ctxt);
		return;
	}
	xmlSAX2StartElementNs(ctx, localname, prefix, uri, nb_namespaces, namespaces,
						  nb_attributes, nb_defaulted, attributes);
}

static bool
is_element(xmlNodePtr n, const char *name)
{
	return n->type == XML_ELEMENT_NODE && strcmp((const char *) n->name, name) == 0;
}

/* Copy attribute attr of node into obj[key] when present. */
static void
copy_attr(json_object *obj, const char *key, xmlNodePtr node, const char *attr)
{
	xmlChar    *v = xmlGetProp(node, (const xmlChar *) attr);

	if (v != NULL)
	{
		cdviz_report_set_text(obj, key, (const char *) v, strlen((const char *) v), 0);
		xmlFree(v);
	}
}

/* The name attribute of node into obj["name"], "" when it has none. */
static void
copy_name(json_object *obj, xmlNodePtr node)
{
	copy_attr(obj, "name", node, "name");
	if (!json_object_object_get_ex(obj, "name", NULL))
		json_object_object_add(obj, "name", json_object_new_string(""));
}

/* The time attribute (seconds) of node into obj["duration"]. */
static void
copy_time(json_object *obj, xmlNodePtr node)
{
	xmlChar    *v = xmlGetProp(node, (const xmlChar *) "time");

	if (v != NULL)
	{
		cdviz_report_set_seconds(obj, "duration", (const char *) v, strlen((const char *) v), 1.0);
		xmlFree(v);
	}
}

/* The text inside node, cut, into obj["details"] unless blank. */
static void
copy_details(json_object *obj, xmlNodePtr node)
{
	xmlChar    *text = xmlNodeGetContent(node);
	size_t		len;
	const char *s;

	if (text == NULL)
		return;
	s = (const char *) text;
	len = strlen(s);
	while (len > 0 && strchr(" \t\r\n", *s))
		s++, len--;
	while (len > 0 && strchr(" \t\r\n", s[len - 1]))
		len--;
	if (len > 0)
		cdviz_report_set_text(obj, "details", s, len, CDVIZ_REPORT_MAX_DETAILS);
	xmlFree(text);
}

/* One <testcase>. */
static bool
read_case(ReportBuild *b, json_object *suite, xmlNodePtr node)
{
	json_object *tc = cdviz_report_add_case(b, suite);
	const char *outcome = "success";

	if (tc == NULL)
		return false;
	copy_name(tc, node);
	copy_attr(tc, "classname", node, "classname");
	copy_attr(tc, "file", node, "file");
	copy_attr(tc, "line", node, "line");
	copy_time(tc, node);
	for (xmlNodePtr c = node->children; c; c = c->next)
	{
		if (is_element(c, "failure"))
			outcome = "failure";
		else if (is_element(c, "error"))
			outcome = "error";
		else if (is_element(c, "skipped"))
			outcome = "skipped";
		else
			continue;
		copy_attr(tc, "message", c, "message");
		copy_attr(tc, "type", c, "type");
		copy_details(tc, c);
		break;
	}
	json_object_object_add(tc, "outcome", json_object_new_string(outcome));
	return true;
}

/* One <testsuite> (with its cases and nested suites) appended to parent. */
static bool
read_suite(ReportBuild *b, json_object *parent, xmlNodePtr node, int depth)
{
	json_object *suite;

	if (depth > CDVIZ_REPORT_MAX_DEPTH)
	{
		cdviz_problems_add(b->problems, "$", "test suites are nested more than %d deep",
						   CDVIZ_REPORT_MAX_DEPTH);
		return false;
	}
	suite = cdviz_report_add_suite(b, parent);
	if (suite == NULL)
		return false;
	copy_name(suite, node);
	copy_attr(suite, "timestamp", node, "timestamp");
	copy_attr(suite, "hostname", node, "hostname");
	copy_time(suite, node);
	/* each child freed once read: the tree and the model do not add up */
	for (xmlNodePtr c = node->children, next; c; c = next)
	{
		bool		ok = true;

		next = c->next;
		if (is_element(c, "testcase"))
			ok = read_case(b, suite, c);
		else if (is_element(c, "testsuite"))
			ok = read_suite(b, suite, c, depth + 1);
		xmlUnlinkNode(c);
		xmlFreeNode(c);
		if (!ok)
			return false;
	}
	return true;
}

/* The suites of a <testsuites>, nested ones flattened into the model's. */
static bool
read_suites(ReportBuild *b, xmlNodePtr node, int depth)
{
	if (depth > CDVIZ_REPORT_MAX_DEPTH)
	{
		cdviz_problems_add(b->problems, "$", "test suites are nested more than %d deep",
						   CDVIZ_REPORT_MAX_DEPTH);
		return false;
	}
	for (xmlNodePtr c = node->children; c; c = c->next)
	{
		if (is_element(c, "testsuite"))
		{
			if (!read_suite(b, NULL, c, 1))
				return false;
		}
		else if (is_element(c, "testsuites"))
		{
			if (!read_suites(b, c, depth + 1))
				return false;
		}
	}
	return true;
}

/*
 * The parser's last error as a problem.  It can quote names from the
 * document, cut here maybe inside a character: only ASCII is kept.
 */
static void
parse_problem(xmlParserCtxtPtr ctxt, CdvizProblems *problems)
{
	xmlErrorPtr err = xmlCtxtGetLastError(ctxt);
	char		msg[256];
	size_t		n;

	if (err == NULL || err->message == NULL)
	{
		cdviz_problems_add(problems, "$", "not well-formed XML");
		return;
	}
	snprintf(msg, sizeof(msg), "%s", err->message);
	n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
		msg[--n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((unsigned char) msg[i] >= 0x80 || (unsigned char) msg[i] < 0x20)
			msg[i] = '?';
	cdviz_problems_add(problems, "$", "not well-formed XML: %s (line %d)", msg, err->line);
}

json_object *
cdviz_junit_parse(const char *data, size_t len, const CdvizReportLimits *limits,
				  CdvizProblems *problems)
{
	size_t		max = limits && limits->max_bytes ? limits->max_bytes : CDVIZ_REPORT_MAX_BYTES;
	JunitParse	state = {false, 0, cdviz_report_case_limit(limits ? limits->max_cases : 0)};
	xmlParserCtxtPtr ctxt;
	xmlDocPtr	doc;
	xmlNodePtr	root;
	ReportBuild b;
	bool		ok;

	if (len > max || len > INT_MAX)
	{
		cdviz_problems_add(problems, "$", "the report has %zu bytes, more than the limit of %zu",
						   len, max < INT_MAX ? max : (size_t) INT_MAX);
		return NULL;
	}
	xmlInitParser();
	ctxt = xmlNewParserCtxt();
	if (ctxt == NULL)
	{
		cdviz_problems_add(problems, "$", "out of memory");
		return NULL;
	}
	ctxt->_private = &state;
	ctxt->sax->entityDecl = refuse_entity_decl;
	ctxt->sax->unparsedEntityDecl = refuse_unparsed_entity_decl;
	ctxt->sax->startElementNs = count_element;
	doc = xmlCtxtReadMemory(ctxt, data, (int) len, NULL, NULL,
							XML_PARSE_NONET | XML_PARSE_NOERROR | XML_PARSE_NOWARNING);
	if (state.entity_declared)
	{
		cdviz_problems_add(problems, "$", "the XML document declares entities in its DOCTYPE, "
						   "which a test report has no use for: refused");
		xmlFreeDoc(doc);
		xmlFreeParserCtxt(ctxt);
		return NULL;
	}
	if (state.elements > state.max_elements)
	{
		cdviz_report_too_many(problems, state.max_elements);
		xmlFreeDoc(doc);
		xmlFreeParserCtxt(ctxt);
		return NULL;
	}
	if (doc == NULL || !ctxt->wellFormed)
	{
		parse_problem(ctxt, problems);
		xmlFreeDoc(doc);
		xmlFreeParserCtxt(ctxt);
		return NULL;
	}
	root = xmlDocGetRootElement(doc);
	cdviz_report_build_start(&b, "junit", limits, problems);
	if (root != NULL && is_element(root, "testsuites"))
		ok = read_suites(&b, root, 1);
	else if (root != NULL && is_element(root, "testsuite"))
		ok = read_suite(&b, NULL, root, 1);
	else
	{
		cdviz_problems_add(problems, "$", "the root element is not <testsuites> or <testsuite>: not a JUnit report");
		ok = false;
	}
	xmlFreeDoc(doc);
	xmlFreeParserCtxt(ctxt);
	if (!ok)
	{
		json_object_put(b.model);
		return NULL;
	}
	return b.model;
}
