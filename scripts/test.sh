#!/usr/bin/env bash
# scripts/test.sh — builds cdviz and runs every test suite.
#
#   bash scripts/test.sh [--quick] [--only SUITE]...
#
# Suites, in order:
#   build    make, then installs the extension (always run: the others need
#            it): as root with the system PostgreSQL 15, builds the Debian
#            package (build/deb/postgresql-15-cdviz_*.deb) and installs it
#            with apt-get; otherwise make install.  CDVIZ_INSTALL=deb|make|none
#            chooses (none: use the cdviz installed already); with deb and a
#            relocated PostgreSQL (CDVIZ_PGBIN=PREFIX/usr/lib/postgresql/15/bin)
#            the package is extracted into PREFIX (dpkg -x).
#   unit     make unit: PostgreSQL-free C tests of the core
#   regress  make installcheck: pg_regress of sql/[0-9]*.sql against the test cluster
#   pgtap    make pgtap-installcheck: pg_prove test/pgtap/*.sql in a fresh
#            database with pgtap and cdviz (make installcheck runs both)
#   tap      make prove-installcheck: test/t/*.pl (PostgreSQL::Test::Cluster
#            starts its own servers)
#   oracle   test/oracle/*.py, each run with /usr/bin/python3
#   grafana  test/grafana/check_dashboards.py: every panel query of
#            grafana/dashboards/ on the demo data, as a cdviz_reader member
#   fuzz     make fuzz FUZZ_SECONDS=${CDVIZ_FUZZ_SECONDS:-60} (needs clang)
#
# --quick skips fuzz; --only SUITE (repeatable) runs just those suites
# (plus the build).  A suite whose test files do not exist yet is skipped.
# PROVE_TESTS (e.g. test/t/070_replication.pl) narrows the tap suite.
# The test cluster lives in build/testpg (port ${CDVIZ_TEST_PGPORT:-5456})
# and is stopped on exit.  Each suite's output is also kept in
# build/test-logs/SUITE.log.  As root, server-side suites run as the
# unprivileged user "cdviz" in a copy of the tree (build/tree); see
# scripts/lib.sh.  Ends with one line "N passed, N failed" (N = suites) and
# exits non-zero when a suite failed.

set -uo pipefail
umask 022

# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

ALL_SUITES=(build unit regress pgtap tap oracle grafana fuzz)
QUICK=0
ONLY=()
usage() { sed -n '2,33s/^# \{0,1\}//p' "${BASH_SOURCE[0]}"; }
while [ $# -gt 0 ]; do
	case "$1" in
	--quick) QUICK=1 ;;
	--only)
		[ $# -ge 2 ] || { usage >&2; exit 2; }
		case " ${ALL_SUITES[*]} " in *" $2 "*) ;; *)
			echo "unknown suite '$2' (suites: ${ALL_SUITES[*]})" >&2
			exit 2
			;;
		esac
		ONLY+=("$2")
		shift
		;;
	--only=*) set -- "$1" --only "${1#--only=}" "${@:2}"; shift; continue ;;
	-h | --help) usage; exit 0 ;;
	*) echo "unknown option '$1'" >&2; usage >&2; exit 2 ;;
	esac
	shift
done

wanted() {
	local s
	[ "$1" = build ] && return 0
	if [ "${#ONLY[@]}" -gt 0 ]; then
		for s in "${ONLY[@]}"; do [ "$s" = "$1" ] && return 0; done
		return 1
	fi
	[ "$1" = fuzz ] && [ "$QUICK" = 1 ] && return 1
	return 0
}

TEST_PGPORT=${CDVIZ_TEST_PGPORT:-5456}
TEST_HTTP_PORT=${CDVIZ_TEST_HTTP_PORT:-18456}
FUZZ_SECONDS=${CDVIZ_FUZZ_SECONDS:-60}
LOGDIR="$CDVIZ_ROOT/build/test-logs"
mkdir -p "$LOGDIR"
T0=$SECONDS

# ---------------------------------------------------------- bookkeeping ----
R_NAME=() R_STATUS=() R_NOTE=()
record() { R_NAME+=("$1") R_STATUS+=("$2") R_NOTE+=("${3:-}"); }
skip() {
	wanted "$1" || return 0
	record "$1" skip "$2"
	cdviz_log "$1: skipped ($2)"
}

# run_suite NAME DIR CMD...: runs CMD in DIR, output to the console and to
# $LOGDIR/NAME.log, and records pass or fail with the time taken.
run_suite() {
	local name=$1 dir=$2 start rc
	shift 2
	start=$SECONDS
	printf '\n===== %s =====\n' "$name"
	# in the background, in a process group of its own, so that a signal
	# interrupts the wait at once and cleanup can stop the whole suite
	set -m
	(
		(cd "$dir" && "$@") 2>&1 </dev/null | tee "$LOGDIR/$name.log"
		exit "${PIPESTATUS[0]}"
	) &
	SUITE_PID=$!
	set +m
	wait "$SUITE_PID"
	rc=$?
	SUITE_PID=""
	if [ "$rc" = 0 ]; then
		record "$name" pass "$((SECONDS - start)) s"
	else
		record "$name" fail "exit $rc after $((SECONDS - start)) s, log build/test-logs/$name.log"
	fi
	return "$rc"
}

summary() {
	local i passed=0 failed=0 skipped=()
	printf '\n===== cdviz test summary (%d s) =====\n' "$((SECONDS - T0))"
	for i in "${!R_NAME[@]}"; do
		printf '%-8s %-4s  %s\n' "${R_NAME[$i]}" "${R_STATUS[$i]}" "${R_NOTE[$i]}"
		case "${R_STATUS[$i]}" in
		pass) passed=$((passed + 1)) ;;
		fail) failed=$((failed + 1)) ;;
		*) skipped+=("${R_NAME[$i]}") ;;
		esac
	done
	[ "${#skipped[@]}" -gt 0 ] && printf 'skipped: %s\n' "${skipped[*]}"
	printf '%d passed, %d failed\n' "$passed" "$failed"
	[ "$failed" = 0 ]
}

# ----------------------------------------------------------- test cluster ----
TESTPG=""
SUITE_PID=""
cleanup() {
	if [ -n "$SUITE_PID" ]; then
		cdviz_warn "interrupted: stopping the running suite"
		kill -TERM -- "-$SUITE_PID" 2>/dev/null
		wait "$SUITE_PID" 2>/dev/null
	fi
	if [ -n "$TESTPG" ]; then cdviz_pg_stop "$TESTPG"; fi
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# ------------------------------------------------------------------ deps ----
cdviz_log "checking dependencies"
if ! cdviz_install_deps 2>&1 | tee "$LOGDIR/deps.log"; then
	record deps fail "installing dependencies failed, log build/test-logs/deps.log"
fi
cdviz_ensure_user

# ----------------------------------------------------------------- build ----
BUILD_OK=0
# decided after the dependencies: the system pg_config it looks at may only
# just have been installed
INSTALL_MODE=$(cdviz_install_mode) || exit 2
cdviz_log "the build suite installs the extension with: $INSTALL_MODE"
run_suite build "$CDVIZ_ROOT" cdviz_build_install_as "$INSTALL_MODE" && BUILD_OK=1
R_NOTE[-1]+=", installed by $INSTALL_MODE"

# ------------------------------------------------------------------ unit ----
if wanted unit; then
	if [ -f "$CDVIZ_ROOT/test/unit/test_core.c" ]; then
		run_suite unit "$CDVIZ_ROOT" cdviz_make unit
	else
		skip unit "no test/unit/test_core.c yet"
	fi
fi

# ----------------------------------------------------- server-side suites ----
have_files() { compgen -G "$CDVIZ_ROOT/$1" >/dev/null; }
SERVER_SUITES=()
wanted regress && SERVER_SUITES+=(regress)
wanted pgtap && SERVER_SUITES+=(pgtap)
wanted tap && SERVER_SUITES+=(tap)
wanted oracle && SERVER_SUITES+=(oracle)
wanted grafana && SERVER_SUITES+=(grafana)

# The tree the server-side suites run in: the repository itself, or, as
# root, a fresh copy owned by the unprivileged user (pg_regress writes
# results/ and TAP tests tmp_check/ into it).
TREE=$CDVIZ_ROOT
prepare_tree() {
	cdviz_is_root || return 0
	TREE=$(cdviz_runtime_dir "$CDVIZ_ROOT/build/tree")
	cdviz_log "copying the tree to $TREE for user $CDVIZ_USER"
	rm -rf "$TREE"
	mkdir -p "$TREE"
	tar -C "$CDVIZ_ROOT" -cf - --exclude=./.git --exclude=./build --exclude=./.run \
		--exclude=./node_modules --exclude=./results --exclude=./tmp_check \
		--exclude=./log --exclude=./regression.diffs --exclude=./regression.out . |
		tar -C "$TREE" -xf - || return 1
	if [ -d "$CDVIZ_ROOT/node_modules" ]; then
		case "$TREE" in
		"$CDVIZ_ROOT"/*) ln -s "$CDVIZ_ROOT/node_modules" "$TREE/node_modules" ;;
		*) cp -a "$CDVIZ_ROOT/node_modules" "$TREE/node_modules" ;;
		esac
	fi
	chown -R "$CDVIZ_USER:" "$TREE"
}

# Environment of the suites that use the test cluster.
export_pgenv() {
	export PGHOST=127.0.0.1 PGPORT=$TEST_PGPORT PGUSER=$CDVIZ_PGSUPERUSER
	export CDVIZ_TEST_PGPORT=$TEST_PGPORT CDVIZ_TEST_HTTP_PORT=$TEST_HTTP_PORT
}

# (TESTPG is set by the caller: this runs in a subshell)
start_testpg() {
	cdviz_pg_stop "$TESTPG" # a leftover of an interrupted run
	rm -rf "$TESTPG"
	cdviz_pg_start "$TESTPG" "$TEST_PGPORT" \
		"fsync = off" "synchronous_commit = off" "full_page_writes = off" \
		"cdviz.http_port = $TEST_HTTP_PORT"
}

suite_regress() {
	cdviz_runas make PG_CONFIG="$CDVIZ_PG_CONFIG" installcheck TAP_TESTS= NO_PGTAP=1 || {
		local rc=$?
		[ -f regression.diffs ] && head -n 300 regression.diffs
		echo "(full diffs: $TREE/regression.diffs)"
		return "$rc"
	}
}

suite_pgtap() {
	cdviz_runas make PG_CONFIG="$CDVIZ_PG_CONFIG" pgtap-installcheck
}

suite_tap() {
	local rc=0 f
	if cdviz_runas make -n PG_CONFIG="$CDVIZ_PG_CONFIG" prove-installcheck >/dev/null 2>&1; then
		cdviz_runas env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
			PATH="$CDVIZ_PGBIN:$TREE/node_modules/.bin:/usr/local/bin:/usr/bin:/bin" \
			make PG_CONFIG="$CDVIZ_PG_CONFIG" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} \
			prove-installcheck || rc=$?
	else
		# PGXS has no prove-installcheck target: installcheck without
		# REGRESS runs just the TAP part
		cdviz_runas env -u PGHOST -u PGPORT -u PGUSER -u PGDATABASE \
			PATH="$CDVIZ_PGBIN:$TREE/node_modules/.bin:/usr/local/bin:/usr/bin:/bin" \
			make PG_CONFIG="$CDVIZ_PG_CONFIG" ${PROVE_TESTS:+PROVE_TESTS="$PROVE_TESTS"} \
			installcheck REGRESS= || rc=$?
	fi
	if [ "$rc" != 0 ]; then
		for f in tmp_check/log/regress_log_*; do
			[ -f "$f" ] || continue
			printf -- '--- last lines of %s ---\n' "$TREE/$f"
			tail -n 40 "$f"
		done
	fi
	return "$rc"
}

suite_oracle() {
	local f rc=0
	if [ -f test/unit/validate_cli.c ]; then
		cdviz_runas make PG_CONFIG="$CDVIZ_PG_CONFIG" test/unit/validate_cli || return 1
	fi
	for f in test/oracle/*.py; do
		printf -- '--- %s ---\n' "$f"
		cdviz_runas /usr/bin/python3 "$f" || { rc=1; echo "FAILED: $f"; }
	done
	return "$rc"
}

suite_grafana() {
	cdviz_runas /usr/bin/python3 test/grafana/check_dashboards.py
}

if [ "${#SERVER_SUITES[@]}" -gt 0 ]; then
	if [ "$BUILD_OK" != 1 ]; then
		for s in "${SERVER_SUITES[@]}"; do skip "$s" "not run: the build failed"; done
	else
		prepare_tree || cdviz_die "could not copy the tree to $TREE"
		export_pgenv
		PG_OK=0
		if { wanted regress && have_files 'sql/[0-9]*.sql'; } ||
			{ wanted pgtap && have_files 'test/pgtap/*.sql'; } ||
			{ wanted oracle && have_files 'test/oracle/*.py'; } ||
			{ wanted grafana && have_files 'test/grafana/check_dashboards.py'; }; then
			TESTPG=$(cdviz_runtime_dir "$CDVIZ_ROOT/build/testpg")
			run_suite testpg "$TREE" start_testpg && PG_OK=1
		fi

		if ! wanted regress; then :
		elif ! have_files 'sql/[0-9]*.sql'; then skip regress "no sql/[0-9]*.sql tests yet"
		elif [ "$PG_OK" != 1 ]; then record regress fail "not run: the test cluster did not start"
		else run_suite regress "$TREE" suite_regress
		fi

		if ! wanted pgtap; then :
		elif ! have_files 'test/pgtap/*.sql'; then skip pgtap "no test/pgtap/*.sql tests yet"
		elif [ "$PG_OK" != 1 ]; then record pgtap fail "not run: the test cluster did not start"
		else run_suite pgtap "$TREE" suite_pgtap
		fi

		if ! wanted tap; then :
		elif ! have_files 'test/t/*.pl'; then skip tap "no test/t/*.pl tests yet"
		else run_suite tap "$TREE" suite_tap
		fi

		if ! wanted oracle; then :
		elif ! have_files 'test/oracle/*.py'; then skip oracle "no test/oracle/*.py tests yet"
		else run_suite oracle "$TREE" suite_oracle
		fi

		if ! wanted grafana; then :
		elif ! have_files 'test/grafana/check_dashboards.py'; then skip grafana "no test/grafana/check_dashboards.py yet"
		elif [ "$PG_OK" != 1 ]; then record grafana fail "not run: the test cluster did not start"
		else run_suite grafana "$TREE" suite_grafana
		fi

		if [ -n "$TESTPG" ]; then cdviz_pg_stop "$TESTPG"; TESTPG=""; fi
	fi
fi

# ------------------------------------------------------------------ fuzz ----
if wanted fuzz; then
	if [ ! -f "$CDVIZ_ROOT/fuzz/fuzz_core.c" ]; then
		skip fuzz "no fuzz/fuzz_core.c yet"
	elif ! cdviz_have clang; then
		skip fuzz "clang not installed"
	else
		run_suite fuzz "$CDVIZ_ROOT" cdviz_make fuzz FUZZ_SECONDS="$FUZZ_SECONDS"
	fi
fi

summary
