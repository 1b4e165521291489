#!/usr/bin/env bash
# glibcpatch/build.sh VERSION: build glibc VERSION with the forkless series
# (glibcpatch/VERSION/series) into build/glibc-VERSION/, never installing
# it system-wide. See glibcpatch/README.md.
#
# The result is keyed by the version, the source descriptor, every patch
# and this recipe: an unchanged rebuild is skipped. With a writable
# ${FORKLESS_GLIBC_CACHE:-/var/cache/forkless-glibc}, finished builds are
# kept there under glibc-VERSION-KEY/ and build/glibc-VERSION is a symlink
# to it, so a fresh clone on the same machine reuses them.
set -euo pipefail

V=${1:?usage: glibcpatch/build.sh VERSION}
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
pdir=$here/$V
[ -f "$pdir/source" ] && [ -f "$pdir/series" ] || { echo "glibcpatch: no series for glibc $V (want $pdir/source and $pdir/series)" >&2; exit 2; }

# The recipe: change it and every build is redone.
RECIPE=3
CONFIGURE_FLAGS=(--prefix=/usr --disable-werror --disable-profile --without-selinux --disable-nscd)
GLIBC_CFLAGS="-O2 -pipe"

out=$top/build/glibc-$V
work=$top/build/glibc-work/$V
cache=${FORKLESS_GLIBC_CACHE:-/var/cache/forkless-glibc}
t0=$(date +%s)
say() { printf '[glibc %s %4ss] %s\n' "$V" $(($(date +%s) - t0)) "$*"; }
log=$work/build.log
fail() {
	echo "glibcpatch: building glibc $V failed: $1" >&2
	echo "glibcpatch: full log: $log (last lines below)" >&2
	tail -n 25 "$log" >&2 2>/dev/null || true
	exit 1
}

# shellcheck source=/dev/null
. "$pdir/source"

key=$( { echo "recipe $RECIPE ${CONFIGURE_FLAGS[*]} $GLIBC_CFLAGS"; cat "$pdir/source" "$pdir/series";
	while read -r p; do cat "$pdir/$p"; done <"$pdir/series"; } | sha256sum | cut -c1-16)

if [ -f "$out/KEY" ] && [ "$(cat "$out/KEY")" = "$V-$key" ] && [ -x "$out/root/lib64/ld-linux-x86-64.so.2" ]; then
	say "up to date ($out, key $key)"
	exit 0
fi
cached=$cache/glibc-$V-$key
if [ -f "$cached/KEY" ] && [ "$(cat "$cached/KEY")" = "$V-$key" ]; then
	rm -rf "$out"
	ln -s "$cached" "$out"
	say "reused $cached"
	exit 0
fi

mkdir -p "$work"
: >"$log"
say "building (key $key); log: $log"

# ---- tools ----
need=()
for t in gawk:gawk bison:bison dpkg-source:dpkg-dev xz:xz-utils patch:patch make:make gcc:gcc python3:python3 msgfmt:gettext; do
	command -v "${t%%:*}" >/dev/null 2>&1 || need+=("${t#*:}")
done
if ((${#need[@]})); then
	say "installing build tools: ${need[*]}"
	[ "$(id -u)" = 0 ] || { echo "glibcpatch: missing ${need[*]}; install them (apt-get install ${need[*]})" >&2; exit 1; }
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >>"$log" 2>&1 || fail "apt-get install ${need[*]}"
fi

# ---- source, through a private apt configuration (the system's is not touched) ----
apt=$top/build/glibc-work/apt
mkdir -p "$apt/lists/partial" "$apt/cache/archives/partial" "$apt/etc/sources.list.d" "$apt/etc/preferences.d"
{
	for s in $DEB_SUITES; do
		case $s in
		*-security) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian-security $s main" ;;
		*) echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian $s main" ;;
		esac
	done
} >"$apt/etc/sources-$V.list"
cat >"$apt/apt-$V.conf" <<EOF
Dir::Etc::sourcelist "$apt/etc/sources-$V.list";
Dir::Etc::sourceparts "$apt/etc/sources.list.d";
Dir::Etc::preferencesparts "$apt/etc/preferences.d";
Dir::State::lists "$apt/lists-$V";
Dir::Cache "$apt/cache";
APT::Sandbox::User "root";
EOF
mkdir -p "$apt/lists-$V/partial"
export APT_CONFIG=$apt/apt-$V.conf

src=$work/src
applied=$src/.forkless-applied
if [ -d "$src" ] && [ -f "$applied/series" ]; then
	# Take the previous series off; files it did not touch keep their
	# time stamps, so the rebuild is incremental.
	say "reverting the previous series"
	tac "$applied/series" | while read -r p; do
		patch -s -R -p1 -d "$src" <"$applied/$p" >>"$log" 2>&1 || { echo "revert $p failed" >>"$log"; exit 1; }
	done || { say "revert failed: fresh source"; rm -rf "$src"; }
	rm -rf "$applied"
elif [ -d "$src" ]; then
	rm -rf "$src"
fi
if [ ! -d "$src" ]; then
	dl=$work/dl
	rm -rf "$dl"
	mkdir -p "$dl"
	say "fetching $DEB_SOURCE ($DEB_SUITES) with apt-get source"
	apt-get update -qq >>"$log" 2>&1 || fail "apt-get update (private configuration $APT_CONFIG)"
	if [ "$MODE" = debian ]; then
		(cd "$dl" && apt-get source -qq "$DEB_SOURCE") >>"$log" 2>&1 || fail "apt-get source $DEB_SOURCE"
		mv "$dl"/glibc-*/ "$src"
	else
		(cd "$dl" && apt-get source -qq --download-only "$DEB_SOURCE") >>"$log" 2>&1 ||
			fail "apt-get source --download-only $DEB_SOURCE"
		mkdir -p "$dl/x"
		tar -C "$dl/x" -xf "$dl"/glibc_*.orig.tar.xz
		mv "$dl"/x/glibc-*/ "$src"
		if [ ! -d "$src/manual" ]; then
			tar -C "$dl" -xf "$dl"/glibc_*.debian.tar.xz debian/patches/all/local-remove-manual.diff
			patch -s -p1 -d "$src" <"$dl/debian/patches/all/local-remove-manual.diff" >>"$log" 2>&1 ||
				fail "Debian's manual stub (local-remove-manual.diff)"
		fi
	fi
	rm -rf "$dl"
fi

say "applying $(wc -l <"$pdir/series") patches"
mkdir -p "$applied"
while read -r p; do
	patch -s -p1 -d "$src" <"$pdir/$p" >>"$log" 2>&1 || fail "patch $pdir/$p does not apply"
	cp "$pdir/$p" "$applied/$p"
done <"$pdir/series"
cp "$pdir/series" "$applied/series"

# ---- configure, make, install ----
obj=$work/obj
conf="${CONFIGURE_FLAGS[*]} CFLAGS=$GLIBC_CFLAGS"
if [ ! -f "$obj/config.status" ] || [ "$(cat "$obj/.forkless-configure" 2>/dev/null)" != "$conf" ]; then
	rm -rf "$obj"
	mkdir -p "$obj"
	say "configure"
	(cd "$obj" && "$src/configure" "${CONFIGURE_FLAGS[@]}" CFLAGS="$GLIBC_CFLAGS") >>"$log" 2>&1 || fail "configure"
	echo "$conf" >"$obj/.forkless-configure"
fi
jobs=$(nproc 2>/dev/null || echo 2)
say "make -j$jobs (a clean build takes about 5-12 minutes on 2 vCPUs)"
(cd "$obj" && make -j"$jobs") >>"$log" 2>&1 &
mk=$!
n=0
while kill -0 "$mk" 2>/dev/null; do
	sleep 2
	n=$((n + 1))
	((n % 15)) || say "  ... $(grep -c '^gcc ' "$log" || true) compiler runs so far"
done
wait "$mk" || fail "make"

stage=$work/stage
rm -rf "$stage"
say "make install DESTDIR=$stage"
(cd "$obj" && make -j"$jobs" install DESTDIR="$stage/root") >>"$log" 2>&1 || fail "make install"

# ---- verify ----
say "verifying"
ldso=$stage/root/lib64/ld-linux-x86-64.so.2
dynsyms=$(readelf -W --dyn-syms "$stage/root/lib64/libc.so.6")
archive=$(nm "$stage/root/usr/lib64/libc.a" 2>/dev/null)
for s in __forkless_spawn_hook_v1 __forkless_fork_hook_v1 __forkless_vfork_hook_v1; do
	grep -Eq "WEAK +DEFAULT +UND $s\$" <<<"$dynsyms" || fail "libc.so.6 lacks the weak hook $s"
	grep -q " w $s\$" <<<"$archive" || fail "libc.a lacks the weak hook $s"
done
"$ldso" --library-path "$stage/root/lib64" /bin/sh -c 'exit 0' >>"$log" 2>&1 || fail "the new ld.so does not run /bin/sh"
grep -q "$stage/root/lib64/libc.so.6" <<<"$("$ldso" --library-path "$stage/root/lib64" --list /bin/true 2>&1)" ||
	fail "the new ld.so does not pick the new libc"
echo "$V-$key" >"$stage/KEY"
cp "$log" "$stage/build.log"

# ---- publish ----
rm -rf "$out"
if mkdir -p "$cache" 2>/dev/null && [ -w "$cache" ]; then
	rm -rf "$cached.tmp"
	mv "$stage" "$cached.tmp"
	mv "$cached.tmp" "$cached"
	ln -s "$cached" "$out"
	say "done: $out -> $cached"
else
	mv "$stage" "$out"
	say "done: $out (cache $cache not writable)"
fi
