# shellcheck shell=bash disable=SC2034  # (variables here are for the scripts that source it)
# Shared helpers for the end-to-end scripts in tests/e2e/. Source it, don't run it:
#
#   . "$(dirname "$0")/lib.sh"
#   e2e_init              # temp dir, EXIT trap, counters
#   registry_start        # sets REG (host:port), REG_URL, REG_PID, REG_DATA, REG_LOG
#   check "name" cmd args...   # runs cmd with `set -e`, counts ok/FAIL, goes on
#   step  "name" cmd args...   # same, but a failure ends the script (later checks need it)
#   e2e_finish            # prints "NAME: N passed, N failed", exits non-zero on failure
#
# Environment:
#   E2E_TARGET=berth (default) | distribution   which registry to test. "distribution" runs
#                 Debian's docker-registry (CNCF Distribution 2.8), the reference, so the
#                 scripts themselves can be validated against a known-good server.
#   BERTH_BIN     the berth binary (default: target/release/berth in this repo)
#   E2E_KEEP=1    keep the temp dir (registry data, logs) after the run
#   E2E_VERBOSE=1 print every check's output, not only a failed one's
#   E2E_CMD_TIMEOUT  seconds any single client command may take (default 300)
#
# Nothing here touches the network beyond 127.0.0.1, and nothing is pulled from a
# public registry: test images are made from /bin/busybox (busybox-static) or a
# debootstrap'd rootfs.

# debootstrap, runc and friends live in sbin, which a non-login PATH may lack.
PATH=$PATH:/usr/local/sbin:/usr/sbin:/sbin
E2E_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
E2E_TARGET=${E2E_TARGET:-berth}
BERTH_BIN=${BERTH_BIN:-$E2E_ROOT/target/release/berth}
E2E_NAME=${E2E_NAME:-$(basename "$0" .sh)}
E2E_CMD_TIMEOUT=${E2E_CMD_TIMEOUT:-300}
E2E_PASS=0
E2E_FAIL=0
E2E_SKIP=0
E2E_CLEANUPS=()
E2E_TMP=
REG_PID=

# Accept header that admits every manifest kind a registry may hold.
ACCEPT_ALL="application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json"
MT_OCI_INDEX=application/vnd.oci.image.index.v1+json
MT_OCI_MANIFEST=application/vnd.oci.image.manifest.v1+json
MT_OCI_CONFIG=application/vnd.oci.image.config.v1+json
MT_OCI_LAYER_GZ=application/vnd.oci.image.layer.v1.tar+gzip
MT_OCI_LAYER=application/vnd.oci.image.layer.v1.tar
MT_DOCKER_MANIFEST=application/vnd.docker.distribution.manifest.v2+json

# ---------------------------------------------------------------------------
# logging, lifecycle, counters

log() { printf '[%s %s] %s\n' "$E2E_NAME" "$(date +%T)" "$*" >&2; }
die() {
	log "FATAL: $*"
	exit 1
}

# Refuse early, with a clear message, when a tool the script needs is missing
# (scripts/install-deps installs all of them).
require() {
	local c missing=()
	for c in "$@"; do
		command -v "$c" >/dev/null 2>&1 || missing+=("$c")
	done
	((${#missing[@]} == 0)) || die "missing tools: ${missing[*]} (run scripts/install-deps)"
}

e2e_init() {
	require curl jq sha256sum timeout tar gzip
	E2E_TMP=$(mktemp -d "/tmp/berth-e2e.$E2E_NAME.XXXXXX")
	trap e2e_on_exit EXIT
	# A signal must still run the EXIT trap so the registry and images are cleaned up.
	trap 'exit 130' INT
	trap 'exit 143' TERM
	log "target=$E2E_TARGET tmp=$E2E_TMP"
}

# Register a command to run at exit (last registered runs first). Call it from the
# script itself, not from inside a check: checks run in subshells.
on_exit() { E2E_CLEANUPS+=("$*"); }

e2e_on_exit() {
	local rc=$? i
	set +e
	for ((i = ${#E2E_CLEANUPS[@]} - 1; i >= 0; i--)); do
		eval "${E2E_CLEANUPS[i]}" >/dev/null 2>&1
	done
	if [[ -n $REG_PID ]]; then
		if ((rc != 0 || E2E_FAIL > 0)) && [[ -s ${REG_LOG:-} ]]; then
			log "last lines of the registry log ($REG_LOG):"
			tail -n 25 "$REG_LOG" | sed 's/^/    reg| /' >&2
		fi
		registry_stop
	fi
	if [[ -n $E2E_TMP && -d $E2E_TMP ]]; then
		if [[ ${E2E_KEEP:-0} == 1 ]]; then
			log "kept $E2E_TMP"
		else
			rm -rf "$E2E_TMP"
		fi
	fi
	exit "$rc"
}

# check NAME CMD [ARGS...]: run CMD (a command or a function) with `set -e` in a
# subshell, capture its output, print one ok/FAIL line (plus the output's tail on
# failure) and count it. The subshell runs asynchronously so that `set -e` really
# applies inside it (bash ignores errexit in anything run as an `if` condition).
# Consequence: CMD cannot set variables for later checks; pass data through files.
E2E_LAST_RC=0
check() {
	local name=$1 rc=0 t0=$SECONDS out
	shift
	out=$E2E_TMP/check.$((E2E_PASS + E2E_FAIL + E2E_SKIP + 1)).log
	(
		set -e
		"$@"
	) >"$out" 2>&1 </dev/null &
	wait $! || rc=$?
	E2E_LAST_RC=$rc
	if ((rc == 0)); then
		E2E_PASS=$((E2E_PASS + 1))
		printf '  ok    %s (%ss)\n' "$name" $((SECONDS - t0))
		[[ ${E2E_VERBOSE:-0} != 1 ]] || sed 's/^/      | /' "$out"
	else
		E2E_FAIL=$((E2E_FAIL + 1))
		printf '  FAIL  %s (exit %s, %ss)\n' "$name" "$rc" $((SECONDS - t0))
		tail -n 40 "$out" | sed 's/^/      | /'
	fi
	return 0
}

# step: like check, but later checks depend on it, so a failure ends the script.
step() {
	check "$@"
	((E2E_LAST_RC == 0)) || {
		log "'$1' failed: stopping here"
		exit 1
	}
}

skip() {
	E2E_SKIP=$((E2E_SKIP + 1))
	printf '  skip  %s\n' "$*"
}

e2e_finish() {
	printf '%s: %d passed, %d failed, %d skipped\n' "$E2E_NAME" "$E2E_PASS" "$E2E_FAIL" "$E2E_SKIP"
	((E2E_FAIL == 0 && E2E_PASS > 0)) || exit 1
	exit 0
}

# Assertion helpers for check bodies: they print what differed, then fail.
expect_eq() { # WHAT EXPECTED GOT
	[[ "$2" == "$3" ]] || {
		echo "$1: expected '$2', got '$3'"
		return 1
	}
}
expect_match() { # WHAT REGEX GOT
	[[ "$3" =~ $2 ]] || {
		echo "$1: expected to match /$2/, got '$3'"
		return 1
	}
}

# refute CMD...: CMD must fail. (A bare `! cmd` would not stop a `set -e` body.)
refute() {
	if "$@"; then
		echo "unexpectedly succeeded: $*"
		return 1
	fi
}

# Run a client with a time bound so that one hung command cannot eat the CI budget.
tmo() { timeout --kill-after=10 "$E2E_CMD_TIMEOUT" "$@"; }

# ---------------------------------------------------------------------------
# registry under test

# A free TCP port on 127.0.0.1, below the kernel's ephemeral range so that an
# outgoing connection cannot grab it between this probe and the server's bind.
free_port() {
	local i p
	for ((i = 0; i < 200; i++)); do
		p=$((20000 + RANDOM % 12000))
		if ! (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
			echo "$p"
			return 0
		fi
	done
	die "no free port found"
}

# registry_start: start the registry under test on a fresh port and data dir (or on
# the same ones again, when REG_PORT/REG_DATA are already set: a restart).
registry_start() {
	REG_PORT=${REG_PORT:-$(free_port)}
	REG=127.0.0.1:$REG_PORT
	REG_URL=http://$REG
	REG_DATA=${REG_DATA:-$E2E_TMP/data}
	REG_LOG=$E2E_TMP/registry.log
	mkdir -p "$REG_DATA"
	echo "=== start $(date +%T) ===" >>"$REG_LOG"
	case $E2E_TARGET in
	berth)
		[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (cargo build --release --bin berth, or set BERTH_BIN)"
		# BERTH_BIN is the harness's variable, not berth configuration: keep it out of
		# berth's BERTH_* environment.
		# Authentication off unless a script asks for it (BERTH_AUTH__MODE=token).
		env -u BERTH_BIN BERTH_AUTH__MODE="${BERTH_AUTH__MODE:-none}" \
			"$BERTH_BIN" serve --listen "$REG" --data-dir "$REG_DATA" >>"$REG_LOG" 2>&1 &
		REG_PID=$!
		;;
	distribution)
		[[ -x /usr/bin/docker-registry ]] || die "docker-registry not installed (run scripts/install-deps)"
		# A fixed http.secret keeps upload URLs (their signed _state) valid across a
		# restart, as any real multi-start deployment must configure.
		cat >"$E2E_TMP/distribution.yml" <<-EOF
			version: 0.1
			log:
			  level: info
			storage:
			  filesystem:
			    rootdirectory: $REG_DATA
			  delete:
			    enabled: true
			  maintenance:
			    uploadpurging:
			      enabled: false
			http:
			  addr: $REG
			  secret: berth-e2e-not-a-secret
		EOF
		/usr/bin/docker-registry serve "$E2E_TMP/distribution.yml" >>"$REG_LOG" 2>&1 &
		REG_PID=$!
		;;
	*) die "unknown E2E_TARGET=$E2E_TARGET (berth|distribution)" ;;
	esac
	registry_wait_ready
	log "registry ($E2E_TARGET) up at $REG_URL pid=$REG_PID data=$REG_DATA"
}

registry_wait_ready() {
	local i code
	for ((i = 0; i < 300; i++)); do # 300 x 0.1 s = 30 s at most
		if ! kill -0 "$REG_PID" 2>/dev/null; then
			tail -n 30 "$REG_LOG" >&2
			die "registry exited during startup"
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$REG_URL/v2/" || true)
		[[ $code == 200 || $code == 401 ]] && return 0
		sleep 0.1
	done
	die "registry not ready after 30 s"
}

# Graceful stop: TERM, then KILL after 10 s.
registry_stop() {
	[[ -n $REG_PID ]] || return 0
	local i
	kill -TERM "$REG_PID" 2>/dev/null || true
	for ((i = 0; i < 100; i++)); do
		kill -0 "$REG_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -KILL "$REG_PID" 2>/dev/null || true
	wait "$REG_PID" 2>/dev/null || true
	REG_PID=
}

# Simulated crash: SIGKILL, no chance to flush or clean up.
registry_kill9() {
	kill -KILL "$REG_PID" 2>/dev/null || true
	wait "$REG_PID" 2>/dev/null || true
	echo "=== killed -9 $(date +%T) ===" >>"$REG_LOG"
	REG_PID=
}

# ---------------------------------------------------------------------------
# HTTP against the registry (curl)

# http_req METHOD URL OUT [CURL_ARGS...]: prints the status code; the body goes to
# OUT and the response headers to OUT.hdr. URL may be a path (/v2/...) or absolute.
http_req() {
	local method=$1 url=$2 out=$3
	shift 3
	[[ $url == http://* || $url == https://* ]] || url=$REG_URL$url
	local -a m=(-X "$method")
	[[ $method == HEAD ]] && m=(--head)
	curl -sS "${m[@]}" --max-time "${E2E_HTTP_TIMEOUT:-120}" -o "$out" -D "$out.hdr" \
		-w '%{http_code}' "$@" "$url"
}

# hdr NAME FILE: value of the last NAME header in a curl -D dump.
hdr() { grep -i "^$1:" "$2" | tail -n 1 | cut -d: -f2- | sed 's/^ *//' | tr -d '\r'; }

# An upload Location may be relative or absolute (both are allowed).
abs_url() {
	case $1 in
	http://* | https://*) echo "$1" ;;
	/*) echo "$REG_URL$1" ;;
	*) echo "$REG_URL/$1" ;;
	esac
}
with_query() { # URL KEY=VALUE
	case $1 in *\?*) echo "$1&$2" ;; *) echo "$1?$2" ;; esac
}

sha_of() { echo "sha256:$(sha256sum "$1" | cut -d' ' -f1)"; }

# verify_blob REPO DIGEST [SIZE]: GET the blob; its bytes must hash to DIGEST.
verify_blob() {
	local repo=$1 digest=$2 size=${3:-} out code got
	out=$(mktemp "$E2E_TMP/blob.XXXXXX")
	code=$(http_req GET "/v2/$repo/blobs/$digest" "$out" -L)
	[[ $code == 200 ]] || {
		echo "GET /v2/$repo/blobs/$digest -> $code: $(head -c 300 "$out")"
		return 1
	}
	got=$(sha_of "$out")
	expect_eq "sha256 of blob $repo@$digest" "$digest" "$got" || return 1
	if [[ -n $size ]]; then expect_eq "size of blob $digest" "$size" "$(stat -c %s "$out")" || return 1; fi
	echo "blob ok: $repo@$digest ($(stat -c %s "$out") bytes)"
	rm -f "$out" "$out.hdr"
}

# fetch_manifest REPO REF OUT [ACCEPT]: GET a manifest; checks the status, that
# Docker-Content-Digest is the sha256 of the body, and (REF a digest) that it is REF.
fetch_manifest() {
	local repo=$1 ref=$2 out=$3 accept=${4:-$ACCEPT_ALL} code got dcd
	code=$(http_req GET "/v2/$repo/manifests/$ref" "$out" -H "Accept: $accept")
	[[ $code == 200 ]] || {
		echo "GET /v2/$repo/manifests/$ref -> $code: $(head -c 300 "$out")"
		return 1
	}
	got=$(sha_of "$out")
	dcd=$(hdr Docker-Content-Digest "$out.hdr")
	if [[ -n $dcd ]]; then expect_eq "Docker-Content-Digest of $repo:$ref" "$got" "$dcd" || return 1; fi
	if [[ $ref == sha256:* ]]; then expect_eq "digest of manifest $repo@$ref" "$ref" "$got" || return 1; fi
}

# verify_tree REPO REF: the manifest (or index) and everything it references are
# served intact: child manifests recursively, config and layer blobs by digest.
verify_tree() {
	local repo=$1 ref=$2 out mt d
	out=$(mktemp "$E2E_TMP/manifest.XXXXXX")
	fetch_manifest "$repo" "$ref" "$out" || return 1
	mt=$(jq -r '.mediaType // empty' "$out")
	[[ -n $mt ]] || mt=$(hdr Content-Type "$out.hdr")
	echo "manifest ok: $repo:$ref $mt $(sha_of "$out")"
	case $mt in
	*index* | *manifest.list*)
		for d in $(jq -r '.manifests[].digest' "$out"); do
			verify_tree "$repo" "$d" || return 1
		done
		;;
	*)
		while read -r d size; do
			verify_blob "$repo" "$d" "$size" || return 1
		done < <(jq -r '(.config, .layers[]) | "\(.digest) \(.size)"' "$out")
		;;
	esac
}

# tags_of REPO: the tag list, one per line, sorted.
tags_of() {
	local out code
	out=$(mktemp "$E2E_TMP/tags.XXXXXX")
	code=$(http_req GET "/v2/$1/tags/list" "$out")
	[[ $code == 200 ]] || {
		echo "GET /v2/$1/tags/list -> $code: $(head -c 300 "$out")" >&2
		return 1
	}
	jq -r '.tags // [] | .[]' "$out" | sort
}

# ---------------------------------------------------------------------------
# curl-driven pushes (the most controllable client, used by crash.sh)

# push_blob REPO FILE [CHUNK_BYTES] [RATE] [PROGRESS_FILE]: POST a session, PATCH the
# file in CHUNK_BYTES pieces (one piece if 0) with Content-Range, then PUT ?digest=.
# RATE (curl --limit-rate, e.g. 512K) slows it down. The session URL and the bytes
# accepted so far are appended to PROGRESS_FILE after the POST and each chunk.
push_blob() {
	local repo=$1 file=$2 chunk=${3:-0} rate=${4:-} progress=${5:-/dev/null}
	local w digest size off=0 n code loc part
	local -a lim=()
	[[ -n $rate ]] && lim=(--limit-rate "$rate")
	w=$(mktemp -d "$E2E_TMP/push.XXXXXX")
	digest=$(sha_of "$file")
	size=$(stat -c %s "$file")
	((chunk > 0)) || chunk=$size
	code=$(http_req POST "/v2/$repo/blobs/uploads/" "$w/r" --data-binary '') || code="curl-error-$?"
	[[ $code == 202 ]] || {
		echo "POST /v2/$repo/blobs/uploads/ -> $code"
		return 1
	}
	loc=$(abs_url "$(hdr Location "$w/r.hdr")")
	echo "$loc 0" >>"$progress"
	((size == 0)) || split -b "$chunk" -d -a 4 "$file" "$w/part."
	for part in "$w"/part.*; do
		[[ -e $part ]] || continue
		n=$(stat -c %s "$part")
		code=$(http_req PATCH "$loc" "$w/r" "${lim[@]}" -H 'Content-Type: application/octet-stream' \
			-H "Content-Range: $off-$((off + n - 1))" --data-binary @"$part") || code="curl-error-$?"
		[[ $code == 202 ]] || {
			echo "PATCH $loc ($off-$((off + n - 1))) -> $code"
			return 1
		}
		loc=$(abs_url "$(hdr Location "$w/r.hdr")")
		off=$((off + n))
		echo "$loc $off" >>"$progress"
	done
	code=$(http_req PUT "$(with_query "$loc" "digest=$digest")" "$w/r" \
		-H 'Content-Type: application/octet-stream' --data-binary '') || code="curl-error-$?"
	[[ $code == 201 ]] || {
		echo "PUT ?digest=$digest -> $code: $(head -c 300 "$w/r")"
		return 1
	}
	rm -rf "$w"
}

# push_manifest REPO REF FILE MEDIATYPE: PUT the manifest; 201 and the right digest.
push_manifest() {
	local repo=$1 ref=$2 file=$3 mt=$4 out code
	out=$(mktemp "$E2E_TMP/put.XXXXXX")
	code=$(http_req PUT "/v2/$repo/manifests/$ref" "$out" -H "Content-Type: $mt" --data-binary @"$file") || code="curl-error-$?"
	[[ $code == 201 ]] || {
		echo "PUT /v2/$repo/manifests/$ref -> $code: $(head -c 300 "$out")"
		return 1
	}
	local dcd
	dcd=$(hdr Docker-Content-Digest "$out.hdr")
	[[ -z $dcd ]] || expect_eq "Docker-Content-Digest of PUT $repo:$ref" "$(sha_of "$file")" "$dcd"
}

# make_random_image DIR LABEL SIZE...: a random OCI image, one uncompressed tar layer
# per SIZE (bytes), in DIR: blobs/<hex>, manifest.json. LABEL goes into its config.
make_random_image() {
	local dir=$1 label=$2 w size d diffids=() layers=()
	shift 2
	mkdir -p "$dir/blobs"
	w=$(mktemp -d "$E2E_TMP/mk.XXXXXX")
	for size in "$@"; do
		head -c "$size" /dev/urandom >"$w/data.bin"
		tar --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$w" -cf "$w/layer.tar" data.bin
		d=$(sha_of "$w/layer.tar")
		diffids+=("$d")
		layers+=("$(jq -cn --arg d "$d" --argjson s "$(stat -c %s "$w/layer.tar")" --arg mt "$MT_OCI_LAYER" \
			'{mediaType: $mt, digest: $d, size: $s}')")
		mv "$w/layer.tar" "$dir/blobs/${d#sha256:}"
	done
	printf '%s\n' "${diffids[@]}" | jq -cRs --arg i "$label" \
		'{architecture: "amd64", os: "linux", config: {Labels: {"berth.e2e.image": $i}},
		  rootfs: {type: "layers", diff_ids: split("\n") | map(select(. != ""))}}' >"$w/config.json"
	d=$(sha_of "$w/config.json")
	mv "$w/config.json" "$dir/blobs/${d#sha256:}"
	printf '%s\n' "${layers[@]}" | jq -cs --arg c "$d" --argjson cs "$(stat -c %s "$dir/blobs/${d#sha256:}")" \
		--arg mt "$MT_OCI_MANIFEST" --arg cmt "$MT_OCI_CONFIG" \
		'{schemaVersion: 2, mediaType: $mt, config: {mediaType: $cmt, digest: $c, size: $cs}, layers: .}' \
		>"$dir/manifest.json"
	rm -rf "$w"
}

# push_random_image DIR REPO TAG CHUNK RATE: push an image made by make_random_image,
# blobs then manifest, recording each result in DIR/status: "blob DIGEST 201",
# "blob DIGEST failed", "manifest 201 DIGEST" or "manifest failed". Never exits
# early (it may run in the background), so the status file is always complete.
push_random_image() {
	local dir=$1 repo=$2 tag=$3 chunk=$4 rate=$5 d
	for d in $(jq -r '(.config, .layers[]).digest' "$dir/manifest.json"); do
		if push_blob "$repo" "$dir/blobs/${d#sha256:}" "$chunk" "$rate" \
			"$dir/progress.${d#sha256:}" >>"$dir/push.log" 2>&1; then
			echo "blob $d 201" >>"$dir/status"
		else
			echo "blob $d failed" >>"$dir/status"
			return 0
		fi
	done
	if push_manifest "$repo" "$tag" "$dir/manifest.json" "$MT_OCI_MANIFEST" >>"$dir/push.log" 2>&1; then
		echo "manifest 201 $(sha_of "$dir/manifest.json")" >>"$dir/status"
	else
		echo "manifest failed" >>"$dir/status"
	fi
}

# ---------------------------------------------------------------------------
# test images, made locally (nothing can be pulled from a public registry)

# make_busybox_rootfs DIR MARKER: /bin/busybox (static) plus a few applet links,
# and /etc/e2e-marker holding MARKER so that variants differ in content.
make_busybox_rootfs() {
	local dir=$1 marker=$2 a
	[[ -x /bin/busybox ]] || die "/bin/busybox missing (apt-get install busybox-static)"
	mkdir -p "$dir/bin" "$dir/etc"
	cp /bin/busybox "$dir/bin/busybox"
	for a in sh echo cat ls true; do ln -sf busybox "$dir/bin/$a"; done
	printf '%s\n' "$marker" >"$dir/etc/e2e-marker"
}

# docker_build_busybox TAG MESSAGE [BUILD_ARGS...]: a FROM-scratch image whose CMD
# prints MESSAGE. Echoes the image ID.
docker_build_busybox() {
	local tag=$1 msg=$2 ctx
	shift 2
	ctx=$(mktemp -d "$E2E_TMP/ctx.XXXXXX")
	make_busybox_rootfs "$ctx/root" "$msg"
	cat >"$ctx/Dockerfile" <<-EOF
		FROM scratch
		COPY root/ /
		CMD ["/bin/busybox", "echo", "$msg"]
	EOF
	tmo docker build -q "$@" -t "$tag" "$ctx" | tail -n 1
}

# OCI image layout written by hand (jq + sha256sum), so the exact bytes and digests
# of every manifest, config and layer are known before any push.
oci_init() {
	mkdir -p "$1/blobs/sha256"
	[[ -f $1/oci-layout ]] || echo '{"imageLayoutVersion":"1.0.0"}' >"$1/oci-layout"
	[[ -f $1/index.json ]] || echo '{"schemaVersion":2,"manifests":[]}' >"$1/index.json"
}

# oci_put_blob LAYOUT FILE: move FILE into the layout; echoes its digest.
oci_put_blob() {
	local d
	d=$(sha_of "$2")
	mv "$2" "$1/blobs/sha256/${d#sha256:}"
	echo "$d"
}
oci_blob_path() { echo "$1/blobs/sha256/${2#sha256:}"; }
oci_size() { stat -c %s "$(oci_blob_path "$1" "$2")"; }

# oci_tag LAYOUT TAG MEDIATYPE DIGEST: point ref name TAG at DIGEST in index.json.
oci_tag() {
	local layout=$1 tag=$2 mt=$3 d=$4 size tmp
	size=$(oci_size "$layout" "$d")
	tmp=$(mktemp "$E2E_TMP/index.XXXXXX")
	jq --arg t "$tag" --arg mt "$mt" --arg d "$d" --argjson s "$size" '
	  .manifests |= (map(select(.annotations["org.opencontainers.image.ref.name"] != $t))
	    + [{mediaType: $mt, digest: $d, size: $s,
	        annotations: {"org.opencontainers.image.ref.name": $t}}])' \
		"$layout/index.json" >"$tmp"
	mv "$tmp" "$layout/index.json"
}

# oci_add_image LAYOUT TAG ARCH MESSAGE: a one-layer busybox image for linux/ARCH
# (the binary is the host's: only the amd64 variant is meant to run). Echoes the
# manifest digest.
oci_add_image() {
	local layout=$1 tag=$2 arch=$3 msg=$4 w diffid layer config manifest
	oci_init "$layout"
	w=$(mktemp -d "$E2E_TMP/oci.XXXXXX")
	make_busybox_rootfs "$w/root" "$msg ($arch)"
	tar --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -C "$w/root" -cf "$w/layer.tar" .
	diffid=$(sha_of "$w/layer.tar")
	gzip -n -c "$w/layer.tar" >"$w/layer.tar.gz"
	layer=$(oci_put_blob "$layout" "$w/layer.tar.gz")
	jq -cn --arg arch "$arch" --arg msg "$msg" --arg diffid "$diffid" '{
	  created: "1970-01-01T00:00:00Z", architecture: $arch, os: "linux",
	  config: {Cmd: ["/bin/busybox", "echo", $msg]},
	  rootfs: {type: "layers", diff_ids: [$diffid]}}' >"$w/config.json"
	config=$(oci_put_blob "$layout" "$w/config.json")
	jq -cn --arg c "$config" --argjson cs "$(oci_size "$layout" "$config")" \
		--arg l "$layer" --argjson ls "$(oci_size "$layout" "$layer")" \
		--arg cmt "$MT_OCI_CONFIG" --arg lmt "$MT_OCI_LAYER_GZ" --arg mt "$MT_OCI_MANIFEST" '{
	  schemaVersion: 2, mediaType: $mt,
	  config: {mediaType: $cmt, digest: $c, size: $cs},
	  layers: [{mediaType: $lmt, digest: $l, size: $ls}]}' >"$w/manifest.json"
	manifest=$(oci_put_blob "$layout" "$w/manifest.json")
	oci_tag "$layout" "$tag" "$MT_OCI_MANIFEST" "$manifest"
	rm -rf "$w"
	echo "$manifest"
}

# oci_add_index LAYOUT TAG MANIFEST_DIGEST...: an image index over those manifests,
# each entry's platform read from its config. Echoes the index digest.
oci_add_index() {
	local layout=$1 tag=$2 d cfg entries=() w index
	shift 2
	w=$(mktemp -d "$E2E_TMP/oci.XXXXXX")
	for d in "$@"; do
		cfg=$(jq -r .config.digest "$(oci_blob_path "$layout" "$d")")
		entries+=("$(jq -cn --arg d "$d" --argjson s "$(oci_size "$layout" "$d")" --arg mt "$MT_OCI_MANIFEST" \
			--slurpfile c "$(oci_blob_path "$layout" "$cfg")" \
			'{mediaType: $mt, digest: $d, size: $s, platform: {architecture: $c[0].architecture, os: $c[0].os}}')")
	done
	printf '%s\n' "${entries[@]}" | jq -cs --arg mt "$MT_OCI_INDEX" \
		'{schemaVersion: 2, mediaType: $mt, manifests: .}' >"$w/index.json"
	index=$(oci_put_blob "$layout" "$w/index.json")
	oci_tag "$layout" "$tag" "$MT_OCI_INDEX" "$index"
	rm -rf "$w"
	echo "$index"
}

# oci_verify_layout LAYOUT: every blob file's name is the sha256 of its bytes.
oci_verify_layout() {
	local f n=0
	for f in "$1"/blobs/sha256/*; do
		expect_eq "blob file $f" "$(basename "$f")" "$(sha256sum "$f" | cut -d' ' -f1)" || return 1
		n=$((n + 1))
	done
	echo "$n blobs verified in $1"
	((n > 0))
}

# ---------------------------------------------------------------------------
# a Debian minbase rootfs (realistic.sh, deploy.sh): debootstrap'd once from the mirror
# apt uses, then cached as a tarball for `docker import`

DEBIAN_CACHE=${E2E_CACHE:-/var/cache/berth-e2e}
DEBIAN_SUITE=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
DEBIAN_ROOTFS_TAR=$DEBIAN_CACHE/debian-$DEBIAN_SUITE-minbase.tar.gz

# The Debian mirror apt already uses (the only one reachable), deb822 or one-line style.
debian_mirror() {
	local m
	m=$(awk '/^URIs:/ { for (i = 2; i <= NF; i++) print $i }' /etc/apt/sources.list.d/*.sources 2>/dev/null |
		grep -v security | grep -m1 '/debian/\?$' || true)
	[[ -n $m ]] || m=$(sed -E 's/\[[^]]*\]//' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null |
		awk '$1 == "deb" { print $2 }' | grep -v security | grep -m1 '/debian/\?$' || true)
	echo "${m:-http://deb.debian.org/debian}"
}

# Unmount whatever debootstrap left mounted under DIR (after a failure), then remove
# DIR without ever crossing into another filesystem (a bind-mounted /dev, say).
safe_rm() {
	local dir=$1 m
	[[ -d $dir ]] || return 0
	while read -r m; do
		umount -l "$m" || true
	done < <(awk -v d="$dir" 'index($2, d) == 1 { print $2 }' /proc/mounts | sort -r)
	if awk -v d="$dir" 'index($2, d) == 1 { found = 1 } END { exit !found }' /proc/mounts; then
		log "still mounted under $dir: leaving it in place"
		return 0
	fi
	rm -rf --one-file-system "$dir"
}

ensure_debian_rootfs() {
	if [[ -s $DEBIAN_ROOTFS_TAR ]]; then
		log "using cached rootfs $DEBIAN_ROOTFS_TAR"
		return 0
	fi
	local mirror work old
	mirror=$(debian_mirror)
	mkdir -p "$DEBIAN_CACHE"
	# leftovers of a run that was killed mid-way
	for old in "$DEBIAN_CACHE"/build.*; do safe_rm "$old"; done
	work=$(mktemp -d "$DEBIAN_CACHE/build.XXXXXX")
	log "debootstrap --variant=minbase $DEBIAN_SUITE from $mirror (cached afterwards in $DEBIAN_CACHE)"
	timeout --kill-after=30 900 debootstrap --variant=minbase "$DEBIAN_SUITE" "$work/rootfs" "$mirror" \
		>"$work/debootstrap.log" 2>&1 || {
		tail -n 30 "$work/debootstrap.log"
		safe_rm "$work"
		return 1
	}
	rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb
	tar -C "$work/rootfs" --one-file-system --numeric-owner -cf - . | gzip -1 >"$work/rootfs.tar.gz"
	mv "$work/rootfs.tar.gz" "$DEBIAN_ROOTFS_TAR" # atomic: a cut-short run leaves no half tarball
	safe_rm "$work"
	ls -l "$DEBIAN_ROOTFS_TAR"
}

# ---------------------------------------------------------------------------
# access control (auth.sh, auth-tls.sh): berth with authentication on

# registry_start_tls: registry_start for berth over HTTPS with its self-signed
# certificate (`--tls-self-signed`). Sets what registry_start sets, with an https://
# REG_URL, plus REG_CA: the certificate (PEM) clients must trust, written by berth
# under the data directory. lib.sh's curl helpers reach the registry only when told
# to trust it: pass --cacert, or run them under as_user/as_anonymous.
registry_start_tls() {
	[[ $E2E_TARGET == berth ]] || die "registry_start_tls needs E2E_TARGET=berth"
	[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (cargo build --release --bin berth, or set BERTH_BIN)"
	REG_PORT=${REG_PORT:-$(free_port)}
	REG=127.0.0.1:$REG_PORT
	REG_URL=https://$REG
	REG_DATA=${REG_DATA:-$E2E_TMP/data}
	REG_LOG=$E2E_TMP/registry.log
	REG_CA=$REG_DATA/tls/berth.crt
	mkdir -p "$REG_DATA"
	echo "=== start (tls) $(date +%T) ===" >>"$REG_LOG"
	env -u BERTH_BIN BERTH_AUTH__MODE="${BERTH_AUTH__MODE:-none}" \
		"$BERTH_BIN" serve --tls-self-signed --listen "$REG" --data-dir "$REG_DATA" >>"$REG_LOG" 2>&1 &
	REG_PID=$!
	local i code
	for ((i = 0; i < 300; i++)); do # 300 x 0.1 s = 30 s at most
		if ! kill -0 "$REG_PID" 2>/dev/null; then
			tail -n 30 "$REG_LOG" >&2
			die "registry exited during startup"
		fi
		code=000
		[[ ! -s $REG_CA ]] ||
			code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 --cacert "$REG_CA" "$REG_URL/v2/" || true)
		if [[ $code == 200 || $code == 401 ]]; then
			log "registry (berth, TLS) up at $REG_URL pid=$REG_PID data=$REG_DATA ca=$REG_CA"
			return 0
		fi
		sleep 0.1
	done
	die "registry (TLS) not ready after 30 s"
}

# Skip a whole berth-only script when E2E_TARGET is another registry (the reference
# has no accounts, projects or management API). Call it right after e2e_init.
berth_only() {
	[[ $E2E_TARGET == berth ]] && return 0
	skip "$E2E_NAME: berth's access control (E2E_TARGET=$E2E_TARGET has none)"
	printf '%s: %d passed, %d failed, %d skipped\n' "$E2E_NAME" 0 0 "$E2E_SKIP"
	exit 0
}

# curl_home USER PASS: a curl config directory (for CURL_HOME) whose .curlrc sends
# USER:PASS with every request (none when USER is empty) and trusts REG_CA when set.
# Echoes the directory.
curl_home() {
	local user=$1 pass=$2 dir
	dir=$(mktemp -d "$E2E_TMP/curlhome.XXXXXX")
	{
		[[ -z $user ]] || printf 'user = "%s:%s"\n' "$user" "$pass"
		[[ -z ${REG_CA:-} ]] || printf 'cacert = "%s"\n' "$REG_CA"
	} >"$dir/.curlrc"
	echo "$dir"
}

# as_user USER PASS CMD...: run CMD (e.g. verify_tree, tags_of, http_req) with every
# curl it makes authenticated as USER (HTTP Basic, which /v2 accepts directly).
# as_anonymous CMD...: the same without credentials (still trusting REG_CA).
as_user() {
	local home
	home=$(curl_home "$1" "$2")
	shift 2
	(
		export CURL_HOME=$home
		"$@"
	)
}
as_anonymous() { as_user "" "" "$@"; }

# api CREDS METHOD PATH OUT [JSON]: a management API call (/api/v1/...) as CREDS
# (user:secret); prints the status code, the body goes to OUT (headers to OUT.hdr).
api() {
	local creds=$1 method=$2 path=$3 out=$4 body=${5:-}
	local -a a=(-u "$creds")
	[[ -z ${REG_CA:-} ]] || a+=(--cacert "$REG_CA")
	[[ -z $body ]] || a+=(-H 'Content-Type: application/json' --data-binary "$body")
	http_req "$method" "$path" "$out" "${a[@]}"
}

# api_expect STATUS CREDS METHOD PATH [JSON]: api, which must answer STATUS; prints
# the body.
api_expect() {
	local want=$1 out code
	shift
	out=$(mktemp "$E2E_TMP/api.XXXXXX")
	code=$(api "$1" "$2" "$3" "$out" "${4:-}") || code="curl-error-$?"
	[[ $code == "$want" ]] || {
		echo "$2 $3 as ${1%%:*}: expected $want, got $code: $(head -c 400 "$out")"
		return 1
	}
	cat "$out"
}

# dockerc NAME ARGS...: docker with its own client configuration directory NAME
# (one per account, so each login's credentials stay apart and never touch
# ~/.docker). Time-bounded like tmo.
dockerc() {
	local name=$1
	shift
	mkdir -p "$E2E_TMP/docker-config/$name"
	DOCKER_CONFIG=$E2E_TMP/docker-config/$name tmo docker "$@"
}

# docker_logout_all: `docker logout` of REG in every dockerc configuration (for on_exit).
docker_logout_all() {
	local d
	for d in "$E2E_TMP"/docker-config/*/; do
		[[ -d $d ]] && DOCKER_CONFIG=$d timeout 30 docker logout "$REG" >/dev/null 2>&1
	done
	return 0
}

# containers_private_env: podman, buildah and skopeo on a private storage (vfs, in the
# temp dir), runc, lowered ulimits, and their own credentials file (REGISTRY_AUTH_FILE),
# as podman.sh explains. The registry is marked insecure (plain HTTP) unless REG_CA is
# set (TLS: pass --cert-dir and --tls-verify=true instead).
containers_private_env() {
	cat >"$E2E_TMP/storage.conf" <<-EOF
		[storage]
		driver = "vfs"
		graphroot = "$E2E_TMP/storage"
		runroot = "$E2E_TMP/run"
	EOF
	cat >"$E2E_TMP/containers.conf" <<-EOF
		[containers]
		default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]
		netns = "none"
		[engine]
		runtime = "runc"
		cgroup_manager = "cgroupfs"
		events_logger = "file"
	EOF
	{
		echo 'unqualified-search-registries = []'
		if [[ -z ${REG_CA:-} ]]; then
			printf '[[registry]]\nlocation = "%s"\ninsecure = true\n' "$REG"
		fi
	} >"$E2E_TMP/registries.conf"
	# podman run reads the credentials file even when it pulls nothing: it must exist.
	echo '{"auths":{}}' >"$E2E_TMP/containers-auth.json"
	export CONTAINERS_STORAGE_CONF=$E2E_TMP/storage.conf CONTAINERS_CONF=$E2E_TMP/containers.conf \
		CONTAINERS_REGISTRIES_CONF=$E2E_TMP/registries.conf REGISTRY_AUTH_FILE=$E2E_TMP/containers-auth.json
}
