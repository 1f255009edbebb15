# shellcheck shell=bash
# scripts/lib.sh — shared helpers of scripts/test.sh and scripts/run.sh.
# Source it; it sets no shell options of its own.
#
# Who runs what:
#   * as root: dependencies, the build and the installation (the Debian
#     package with the system PostgreSQL, see cdviz_install_mode; else
#     `make install`) run as root; every PostgreSQL server and every test that talks to or starts a server runs
#     as the unprivileged system user $CDVIZ_USER (default "cdviz", created
#     with home /var/lib/cdviz when missing), because PostgreSQL refuses root.
#   * as a normal user: everything runs as that user; `make install` uses
#     `sudo -n` when the PostgreSQL directories are not writable, or accepts
#     an extension that is already installed.
#
# Our clusters are initialised with the bootstrap superuser "postgres"
# ($CDVIZ_PGSUPERUSER) whatever the OS user, with trust authentication for
# unix-socket and 127.0.0.1 connections, so clients connect with
#   psql -h 127.0.0.1 -p PORT -U postgres DBNAME

CDVIZ_ROOT=${CDVIZ_ROOT:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}
CDVIZ_PGBIN=${CDVIZ_PGBIN:-/usr/lib/postgresql/15/bin}
CDVIZ_PG_CONFIG=${CDVIZ_PG_CONFIG:-$CDVIZ_PGBIN/pg_config}
CDVIZ_USER=${CDVIZ_USER:-cdviz}
CDVIZ_USER_HOME=${CDVIZ_USER_HOME:-/var/lib/cdviz}
CDVIZ_PGSUPERUSER=${CDVIZ_PGSUPERUSER:-postgres}

# Debian packages the build, the Debian package's build (debian/) and the
# tests need.
CDVIZ_APT_PACKAGES=(
	postgresql-15 postgresql-server-dev-15
	libjson-c-dev libcurl4-openssl-dev libmicrohttpd-dev libxml2-dev zlib1g-dev
	postgresql-15-pgtap libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
	python3 python3-jsonschema python3-rfc3987
	curl wrk nats-server libnats-dev librdkafka-dev kcat docker-registry clang make
	build-essential dpkg-dev debhelper postgresql-server-dev-all
)
# npm packages the tests need, installed into $CDVIZ_ROOT/node_modules.
# Add more here ("name@version"); all are installed in one `npm install`
# because npm prunes --no-save packages it is not told about again.
CDVIZ_NPM_PACKAGES=(
	s3rver@3.7.1
	cloudevents@10.0.0
)

cdviz_log() { printf '==> %s\n' "$*" >&2; }
cdviz_warn() { printf 'WARNING: %s\n' "$*" >&2; }
cdviz_die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }
cdviz_is_root() { [ "$(id -u)" -eq 0 ]; }
cdviz_have() { command -v "$1" >/dev/null 2>&1; }

# Runs a command as root: directly when root, else with `sudo -n` (never
# prompts).  Fails when neither is possible.
cdviz_as_root() {
	if cdviz_is_root; then
		"$@"
	elif cdviz_have sudo && sudo -n true 2>/dev/null; then
		sudo -n "$@"
	else
		return 1
	fi
}

# ---------------------------------------------------------------- deps ----

cdviz_dpkg_installed() {
	[ "$(dpkg-query -W -f='${db:Status-Status}' "$1" 2>/dev/null)" = installed ]
}

cdviz_apt_updated=0
cdviz_apt_install() {
	if [ "$cdviz_apt_updated" = 0 ]; then
		cdviz_as_root env DEBIAN_FRONTEND=noninteractive \
			apt-get -o DPkg::Lock::Timeout=300 update -q || return 1
		cdviz_apt_updated=1
	fi
	cdviz_as_root env DEBIAN_FRONTEND=noninteractive \
		apt-get -o DPkg::Lock::Timeout=300 install -y -q "$@"
}

# Installs what is missing of the Debian and npm packages; fast (dpkg-query
# only) when everything is there already.
cdviz_install_deps() {
	local missing=() p
	for p in "${CDVIZ_APT_PACKAGES[@]}"; do
		cdviz_dpkg_installed "$p" || missing+=("$p")
	done
	if ! cdviz_have node; then
		missing+=(nodejs npm)
	elif ! cdviz_have npm; then
		missing+=(npm)
	fi
	if [ "${#missing[@]}" -gt 0 ]; then
		cdviz_log "installing Debian packages: ${missing[*]}"
		if cdviz_is_root || { cdviz_have sudo && sudo -n true 2>/dev/null; }; then
			cdviz_apt_install "${missing[@]}" || {
				cdviz_warn "apt-get install failed"
				return 1
			}
		else
			cdviz_warn "not root and no password-less sudo: cannot install ${missing[*]}; continuing with what is there"
		fi
	fi
	cdviz_install_npm
}

# Installs CDVIZ_NPM_PACKAGES into $CDVIZ_ROOT/node_modules when one is
# missing or of another version.  A failure is a warning: only the tests
# that need those tools will fail.
cdviz_install_npm() {
	local spec name want have need=0
	[ "${#CDVIZ_NPM_PACKAGES[@]}" -gt 0 ] || return 0
	for spec in "${CDVIZ_NPM_PACKAGES[@]}"; do
		name=${spec%@*}
		want=${spec##*@}
		if [ -z "$name" ]; then name=$spec want=; fi # "@scope/pkg" without a version
		have=$(sed -n 's/^[[:space:]]*"version":[[:space:]]*"\([^"]*\)".*/\1/p' \
			"$CDVIZ_ROOT/node_modules/$name/package.json" 2>/dev/null | head -n 1)
		if [ -z "$have" ] || { [ -n "$want" ] && [ "$have" != "$want" ]; }; then
			need=1
		fi
	done
	[ "$need" = 1 ] || return 0
	if ! cdviz_have npm; then
		cdviz_warn "npm not found: cannot install ${CDVIZ_NPM_PACKAGES[*]}"
		return 0
	fi
	cdviz_log "installing npm packages into node_modules/: ${CDVIZ_NPM_PACKAGES[*]}"
	mkdir -p "$CDVIZ_ROOT/node_modules"
	if ! (cd "$CDVIZ_ROOT" && npm install --prefix "$CDVIZ_ROOT" --no-save --no-package-lock \
		--no-audit --no-fund --loglevel=error "${CDVIZ_NPM_PACKAGES[@]}"); then
		cdviz_warn "npm install failed; tests needing ${CDVIZ_NPM_PACKAGES[*]} will fail"
	fi
	return 0
}

# --------------------------------------------------------------- build ----

cdviz_make() {
	make -C "$CDVIZ_ROOT" PG_CONFIG="$CDVIZ_PG_CONFIG" "$@"
}

# make in the tree.  Returns non-zero (with a message) when the build fails.
cdviz_build() {
	local jobs
	jobs=$(nproc 2>/dev/null || echo 2)
	cdviz_log "building (make -j$jobs)"
	if ! cdviz_make -j"$jobs"; then
		printf 'ERROR: BUILD FAILED (make in %s)\n' "$CDVIZ_ROOT" >&2
		return 1
	fi
}

# make && make install.  Returns non-zero (with a message) when the build
# fails or the extension cannot be installed.
cdviz_build_install() {
	cdviz_build && cdviz_install_make
}

# make install of the tree's build into the PostgreSQL of CDVIZ_PG_CONFIG.
cdviz_install_make() {
	local pkglibdir sharedir
	pkglibdir=$("$CDVIZ_PG_CONFIG" --pkglibdir)
	sharedir=$("$CDVIZ_PG_CONFIG" --sharedir)
	cdviz_log "installing into $pkglibdir and $sharedir/extension"
	if cdviz_is_root || { [ -w "$pkglibdir" ] && [ -w "$sharedir/extension" ]; }; then
		cdviz_make install || { echo "ERROR: make install failed" >&2; return 1; }
	elif cdviz_have sudo && sudo -n true 2>/dev/null; then
		sudo -n make -C "$CDVIZ_ROOT" PG_CONFIG="$CDVIZ_PG_CONFIG" install ||
			{ echo "ERROR: sudo make install failed" >&2; return 1; }
	elif [ -f "$pkglibdir/cdviz.so" ] && [ -f "$sharedir/extension/cdviz.control" ]; then
		cdviz_warn "cannot install (not root, no password-less sudo): using the cdviz already installed in $pkglibdir"
		if ! cmp -s "$CDVIZ_ROOT/cdviz.so" "$pkglibdir/cdviz.so"; then
			cdviz_warn "the installed cdviz.so is not byte-identical to this build (another checkout, or stale): the tests use the installed one; run make install as root to test this build"
		fi
		local f
		for f in "$CDVIZ_ROOT"/sql/cdviz--*.sql; do
			[ -f "$f" ] || continue
			cmp -s "$f" "$sharedir/extension/${f##*/}" ||
				cdviz_warn "the installed ${f##*/} differs from this build"
		done
	else
		echo "ERROR: cannot run 'make install' (not root, no password-less sudo) and cdviz is not installed" >&2
		return 1
	fi
}

# Builds the Debian package postgresql-15-cdviz with PostgreSQL's packaging
# tools (debian/: pg_buildext through debhelper) and prints the path of the
# .deb.  dpkg-buildpackage writes into the parent of the source directory,
# so the build runs in a copy of the tree, build/deb/cdviz, and leaves
# build/deb/postgresql-15-cdviz_VERSION_ARCH.deb beside it; the repository
# and its parent are not touched.  The copy leaves out what the build makes
# (objects, generated scripts, test binaries) so that nothing of a build
# against another PostgreSQL (CDVIZ_PG_CONFIG) gets into the package.
# pg_buildext builds against /usr/lib/postgresql/15 (postgresql-server-dev-15)
# and installs into debian/, never into /usr.  Only the build runs: no test
# (debian/rules says why).  The log is build/deb/build.log.
cdviz_build_deb() {
	local out=$CDVIZ_ROOT/build/deb src version arch deb
	src=$out/cdviz
	cdviz_have dpkg-buildpackage || { echo "ERROR: dpkg-buildpackage not found (apt-get install dpkg-dev)" >&2; return 1; }
	[ -x /usr/bin/pg_buildext ] || { echo "ERROR: pg_buildext not found (apt-get install postgresql-server-dev-all)" >&2; return 1; }
	rm -rf "$out"
	mkdir -p "$src"
	tar -C "$CDVIZ_ROOT" -cf - --exclude=./.git --exclude=./build --exclude=./.run \
		--exclude=./node_modules --exclude=./results --exclude=./tmp_check --exclude=./log \
		--exclude=./regression.diffs --exclude=./regression.out \
		--exclude='*.o' --exclude='*.so' --exclude='*.bc' --exclude='*.a' . |
		tar -C "$src" -xf - || { echo "ERROR: could not copy the tree to $src" >&2; return 1; }
	# the test and fuzz binaries (built by `make unit`, `make fuzz`)
	make -s -C "$src" PG_CONFIG=/usr/lib/postgresql/15/bin/pg_config clean >/dev/null 2>&1
	cdviz_log "building the Debian package in $src (log $out/build.log)"
	if ! (cd "$src" && dpkg-buildpackage -b -us -uc) >"$out/build.log" 2>&1; then
		tail -n 60 "$out/build.log" >&2
		echo "ERROR: dpkg-buildpackage failed (full log: $out/build.log)" >&2
		return 1
	fi
	version=$(dpkg-parsechangelog -l "$src/debian/changelog" -S Version) || return 1
	arch=$(dpkg --print-architecture)
	deb=$out/postgresql-15-cdviz_${version}_${arch}.deb
	[ -f "$deb" ] || { echo "ERROR: dpkg-buildpackage made no $deb" >&2; return 1; }
	echo "$deb"
}

# Installs the package DEB into the PostgreSQL of CDVIZ_PG_CONFIG, then
# checks that the installed control file and scripts are those of this tree.
#   * the system PostgreSQL 15 (/usr/lib/postgresql/15): apt-get install,
#     as root (or password-less sudo).  --reinstall because a rebuilt
#     package keeps its version, which apt would otherwise call installed
#     already; --allow-downgrades when a later version is installed.
#   * a relocated copy of Debian's layout (PREFIX/usr/lib/postgresql/15):
#     dpkg -x DEB PREFIX puts the package's files where that server looks
#     for them; dpkg's database is not touched.
cdviz_install_deb() {
	local deb=$1 pkglibdir sharedir prefix f bad=0
	pkglibdir=$("$CDVIZ_PG_CONFIG" --pkglibdir) || return 1
	sharedir=$("$CDVIZ_PG_CONFIG" --sharedir) || return 1
	case "$pkglibdir" in
	/usr/lib/postgresql/15/lib)
		cdviz_log "installing ${deb##*/} on this machine (apt-get install)"
		cdviz_as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
			install -y -q --reinstall --allow-downgrades "$deb" || {
			echo "ERROR: apt-get install $deb failed (it needs root or password-less sudo)" >&2
			return 1
		}
		dpkg-query -W -f='${Package} ${Version} ${db:Status-Status}\n' postgresql-15-cdviz
		;;
	*/usr/lib/postgresql/15/lib)
		prefix=${pkglibdir%/usr/lib/postgresql/15/lib}
		cdviz_log "extracting ${deb##*/} into $prefix (a relocated PostgreSQL: dpkg -x, not registered with dpkg)"
		dpkg -x "$deb" "$prefix" || { echo "ERROR: dpkg -x $deb $prefix failed" >&2; return 1; }
		;;
	*)
		echo "ERROR: the package installs into /usr/lib/postgresql/15; the PostgreSQL of $CDVIZ_PG_CONFIG uses $pkglibdir (use CDVIZ_INSTALL=make)" >&2
		return 1
		;;
	esac
	[ -f "$pkglibdir/cdviz.so" ] || { echo "ERROR: no $pkglibdir/cdviz.so after installing the package" >&2; return 1; }
	for f in "$CDVIZ_ROOT/cdviz.control" "$CDVIZ_ROOT"/sql/cdviz--*.sql "$CDVIZ_ROOT"/sql/versions/cdviz--*.sql; do
		[ -f "$f" ] || continue
		if ! cmp -s "$f" "$sharedir/extension/${f##*/}"; then
			echo "ERROR: $sharedir/extension/${f##*/} is not this tree's ${f#"$CDVIZ_ROOT"/}" >&2
			bad=1
		fi
	done
	return "$bad"
}

# How the build suite installs the extension, from CDVIZ_INSTALL:
#   deb   build the Debian package and install it (cdviz_install_deb)
#   make  make install (cdviz_install_make)
#   none  install nothing: the tests use what is installed already
#   auto  (default) deb as root with the system PostgreSQL 15, which is how
#         CI exercises the package at every run; make otherwise
cdviz_install_mode() {
	case "${CDVIZ_INSTALL:-auto}" in
	deb | make | none) echo "$CDVIZ_INSTALL" ;;
	auto)
		if cdviz_is_root &&
			[ "$("$CDVIZ_PG_CONFIG" --pkglibdir 2>/dev/null)" = /usr/lib/postgresql/15/lib ]; then
			echo deb
		else
			echo make
		fi
		;;
	*)
		echo "ERROR: CDVIZ_INSTALL=$CDVIZ_INSTALL: expected deb, make, none or auto" >&2
		return 1
		;;
	esac
}

# make, then install the extension the way MODE says (cdviz_install_mode).
# The tree's own build comes first in every mode: the unit tests, the
# oracle and the fuzzer use it.
cdviz_build_install_as() {
	local mode=$1 deb
	cdviz_build || return 1
	case "$mode" in
	deb)
		deb=$(cdviz_build_deb) || return 1
		cdviz_install_deb "$deb" || return 1
		cdviz_log "extension installed from the Debian package $deb"
		;;
	make)
		cdviz_install_make || return 1
		cdviz_log "extension installed with make install"
		;;
	none)
		cdviz_log "extension not installed (CDVIZ_INSTALL=none): the tests use the cdviz installed in $("$CDVIZ_PG_CONFIG" --pkglibdir)"
		;;
	*)
		echo "ERROR: unknown install mode '$mode'" >&2
		return 1
		;;
	esac
}

# ---------------------------------------------------- unprivileged user ----

# Creates the unprivileged system user when running as root.
cdviz_ensure_user() {
	cdviz_is_root || return 0
	if ! id -u "$CDVIZ_USER" >/dev/null 2>&1; then
		cdviz_log "creating system user $CDVIZ_USER (home $CDVIZ_USER_HOME)"
		useradd --system --user-group --create-home --home-dir "$CDVIZ_USER_HOME" \
			--shell /bin/bash --comment "cdviz test and run user" "$CDVIZ_USER" ||
			cdviz_die "could not create user $CDVIZ_USER"
	fi
	CDVIZ_USER_HOME=$(getent passwd "$CDVIZ_USER" | cut -d: -f6)
	if [ ! -d "$CDVIZ_USER_HOME" ]; then
		mkdir -p "$CDVIZ_USER_HOME"
		chown "$CDVIZ_USER:" "$CDVIZ_USER_HOME"
	fi
}

# The OS user that runs servers and server tests.
cdviz_runas_user() {
	if cdviz_is_root; then echo "$CDVIZ_USER"; else id -un; fi
}

# cdviz_runas CMD...: runs CMD as $CDVIZ_USER when root, else directly, in
# the current directory (which must be accessible to that user), with the
# PostgreSQL binaries first on PATH.  Exported variables pass through.
cdviz_runas() {
	if cdviz_is_root; then
		cdviz_ensure_user
		runuser -u "$CDVIZ_USER" -- env HOME="$CDVIZ_USER_HOME" USER="$CDVIZ_USER" \
			LOGNAME="$CDVIZ_USER" PATH="$CDVIZ_PGBIN:/usr/local/bin:/usr/bin:/bin" "$@"
	else
		env PATH="$CDVIZ_PGBIN:$PATH" "$@"
	fi
}

# True when the run-as user can reach (traverse) directory $1.
cdviz_runas_can_reach() {
	(cd / && cdviz_runas test -x "$1" -a -r "$1") 2>/dev/null
}

# A directory for files the run-as user must own: $1 when that user can
# reach its parent, else a directory of the same name in the user's home
# (e.g. when the repository lives under /root).
cdviz_runtime_dir() {
	local want=$1 parent
	parent=$(dirname "$want")
	mkdir -p "$parent"
	if ! cdviz_is_root || cdviz_runas_can_reach "$parent"; then
		echo "$want"
	else
		local tag
		tag=$(printf '%s' "$CDVIZ_ROOT" | cksum | cut -d' ' -f1)
		echo "$CDVIZ_USER_HOME/cdviz-$tag/$(basename "$parent")/$(basename "$want")"
	fi
}

# Creates directory $1 owned by the run-as user.
cdviz_mkdir_owned() {
	mkdir -p "$1"
	if cdviz_is_root; then chown "$CDVIZ_USER:" "$1"; fi
}

# ------------------------------------------------------------- servers ----

# Where the server's unix socket lives: the data directory itself, unless
# that path is too long for a socket (107 bytes), then /tmp/cdviz-PORT.
cdviz_pg_sockdir() {
	local dir=$1 port=$2
	if [ "${#dir}" -le 80 ]; then echo "$dir"; else echo "/tmp/cdviz-sock-$port"; fi
}

# psql on our cluster: cdviz_psql PORT [psql args...]
cdviz_psql() {
	local port=$1
	shift
	"$CDVIZ_PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$port" -U "$CDVIZ_PGSUPERUSER" "$@"
}

cdviz_pg_running() {
	[ -f "$1/postmaster.pid" ] && (cd / && cdviz_runas "$CDVIZ_PGBIN/pg_ctl" -D "$1" status >/dev/null 2>&1)
}

# cdviz_pg_start DIR PORT [SETTING...]
# Creates (initdb, if needed) and starts a cluster in data directory DIR on
# 127.0.0.1:PORT and a unix socket in DIR, with cdviz preloaded; waits until
# it accepts connections and creates database "cdviz".  SETTINGs are
# postgresql.conf lines ("name = value"); those starting with "cdviz." go to
# DIR/cdviz.conf, written only when missing (edit it to configure sources).
# The server log is DIR/server.log.
cdviz_pg_start() {
	local dir=$1 port=$2 sockdir conf line
	shift 2
	local cdviz_lines=("cdviz.database = 'cdviz'") pg_lines=()
	for line in "$@"; do
		case "$line" in cdviz.*) cdviz_lines+=("$line") ;; *) pg_lines+=("$line") ;; esac
	done
	cdviz_ensure_user
	sockdir=$(cdviz_pg_sockdir "$dir" "$port")

	if cdviz_pg_running "$dir" &&
		[ "$(sed -n 's/^port = \([0-9]*\)$/\1/p' "$dir/postgresql.conf" | tail -n 1)" != "$port" ]; then
		cdviz_log "cluster $dir runs on another port: restarting it on port $port"
		cdviz_pg_stop "$dir"
	fi
	if cdviz_pg_running "$dir"; then
		cdviz_log "cluster $dir already running"
	else
		if [ ! -f "$dir/PG_VERSION" ]; then
			cdviz_mkdir_owned "$dir"
			chmod 700 "$dir"
			cdviz_log "initdb $dir"
			(cd / && cdviz_runas "$CDVIZ_PGBIN/initdb" -D "$dir" -U "$CDVIZ_PGSUPERUSER" \
				-A trust -E UTF8 --locale=C >"$dir.initdb.log" 2>&1) || {
				cat "$dir.initdb.log" >&2
				echo "ERROR: initdb of $dir failed" >&2
				return 1
			}
			rm -f "$dir.initdb.log"
		fi
		conf="$dir/postgresql.conf"
		# our block is rewritten on every start (the port may change)
		sed -i '/^# >>> cdviz (scripts\/lib.sh)/,/^# <<< cdviz/d' "$conf"
		{
			echo "# >>> cdviz (scripts/lib.sh) — rewritten at each start"
			echo "listen_addresses = '127.0.0.1'"
			echo "port = $port"
			echo "unix_socket_directories = '$sockdir'"
			echo "shared_preload_libraries = 'cdviz'"
			echo "log_line_prefix = '%m [%p] %q%u@%d '"
			for line in "${pg_lines[@]}"; do echo "$line"; done
			echo "include_if_exists = 'cdviz.conf'"
			echo "# <<< cdviz"
		} >>"$conf"
		if [ ! -f "$dir/cdviz.conf" ]; then
			{
				echo "# cdviz settings (see the README); reload with SELECT pg_reload_conf();"
				for line in "${cdviz_lines[@]}"; do echo "$line"; done
			} >"$dir/cdviz.conf"
		fi
		if cdviz_is_root; then chown "$CDVIZ_USER:" "$conf" "$dir/cdviz.conf"; fi
		if [ "$sockdir" != "$dir" ]; then cdviz_mkdir_owned "$sockdir"; fi

		cdviz_log "starting PostgreSQL on 127.0.0.1:$port (data $dir, log $dir/server.log)"
		if ! (cd / && cdviz_runas "$CDVIZ_PGBIN/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start >/dev/null); then
			echo "ERROR: PostgreSQL did not start; last lines of $dir/server.log:" >&2
			tail -n 30 "$dir/server.log" >&2 2>/dev/null
			return 1
		fi
	fi

	local i
	for i in $(seq 1 60); do
		"$CDVIZ_PGBIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break
		[ "$i" = 60 ] && { echo "ERROR: server on port $port not ready after 60 s" >&2; return 1; }
		sleep 1
	done
	if [ "$(cdviz_psql "$port" -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'cdviz'")" != 1 ]; then
		cdviz_psql "$port" -d postgres -c 'CREATE DATABASE cdviz' || return 1
	fi
}

# cdviz_pg_stop DIR: stops our cluster in DIR (fast shutdown); falls back to
# signalling the PID in DIR/postmaster.pid.  Quiet when it is not running.
cdviz_pg_stop() {
	local dir=$1 pid
	[ -f "$dir/postmaster.pid" ] || return 0
	if (cd / && cdviz_runas "$CDVIZ_PGBIN/pg_ctl" -D "$dir" -m fast -w -t 60 stop >/dev/null 2>&1); then
		cdviz_log "stopped PostgreSQL (data $dir)"
		return 0
	fi
	pid=$(head -n 1 "$dir/postmaster.pid" 2>/dev/null)
	if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null &&
		grep -q postgres "/proc/$pid/comm" 2>/dev/null; then
		cdviz_warn "pg_ctl stop failed; sending SIGQUIT to postmaster $pid"
		kill -QUIT "$pid" 2>/dev/null
	fi
	return 0
}
