#!/usr/bin/env bash
# Crash safety: 8 concurrent curl-driven pushes of distinct random images (some of
# several MiB, sent slowly in chunks), SIGKILL the registry while some are mid-upload,
# restart it on the same data dir, then check what a user relies on:
#   - every push the client saw succeed (manifest PUT 201) pulls back intact;
#   - every blob PUT that got 201 is still there, intact;
#   - no blob or manifest is ever served whose bytes do not match its digest;
#   - an interrupted upload session either resumes (GET -> 204 + Range, finish it, the
#     blob verifies) or is cleanly gone (404 BLOB_UPLOAD_UNKNOWN);
#   - the registry takes new pushes after the restart.
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
registry_start

N=8        # concurrent pushes; 1..3 small and fast, 4..8 big and slow
CHUNK=1048576
RATE=1M    # per PATCH: a big layer takes seconds, so the kill lands mid-upload
IMG=$E2E_TMP/img

# make_image I SIZE...: a random image in $IMG/I (see make_random_image).
make_image() {
	local i=$1
	shift
	make_random_image "$IMG/$i" "$i" "$@"
}

# push_image I CHUNK RATE: push $IMG/I as e2e/crash-I:1 (see push_random_image).
push_image() { push_random_image "$IMG/$1" "e2e/crash-$1" 1 "$2" "$3"; }

acked() { grep -l '^manifest 201' "$IMG"/*/status 2>/dev/null | wc -l; }

make_images() {
	local i
	for i in 1 2 3; do make_image "$i" 65536 204800; done
	for ((i = 4; i <= N; i++)); do make_image "$i" $((2 * CHUNK + i * 100000)) $(((i - 2) * CHUNK)); done
	# A separate upload left idle mid-way: 1 of its 3 MiB sent before the crash.
	head -c $((3 * CHUNK)) /dev/urandom >"$E2E_TMP/idle.bin"
	ls -l "$IMG"/*/blobs
}

start_idle_upload() {
	local code loc
	code=$(http_req POST /v2/e2e/crash-idle/blobs/uploads/ "$E2E_TMP/idle" --data-binary '')
	expect_eq "POST upload" 202 "$code"
	loc=$(abs_url "$(hdr Location "$E2E_TMP/idle.hdr")")
	head -c "$CHUNK" "$E2E_TMP/idle.bin" >"$E2E_TMP/idle.part"
	code=$(http_req PATCH "$loc" "$E2E_TMP/idle" -H 'Content-Type: application/octet-stream' \
		-H "Content-Range: 0-$((CHUNK - 1))" --data-binary @"$E2E_TMP/idle.part")
	expect_eq "PATCH first chunk" 202 "$code"
	echo "$(abs_url "$(hdr Location "$E2E_TMP/idle.hdr")") $CHUNK" >"$E2E_TMP/idle.progress"
}

# resume_or_unknown LOC FILE REPO [CODES]: the session at LOC was cut short; GET its
# status. 204 with Range 0-X: send FILE from X+1, PUT ?digest=, expect 201 and an
# intact blob. 404: the error code must be one of CODES (a regex; default
# BLOB_UPLOAD_UNKNOWN). Anything else fails.
resume_or_unknown() {
	local loc=$1 file=$2 repo=$3 codes=${4:-BLOB_UPLOAD_UNKNOWN} code range off digest size
	digest=$(sha_of "$file")
	size=$(stat -c %s "$file")
	code=$(http_req GET "$loc" "$E2E_TMP/st")
	case $code in
	204)
		range=$(hdr Range "$E2E_TMP/st.hdr")
		expect_match "Range header" '^(bytes=)?0-[0-9]+$' "$range"
		off=$((${range##*-} + 1))
		# "0-0" is what Distribution (and berth) answer for an empty session: 0 bytes.
		[[ ${range#bytes=} != 0-0 ]] || off=0
		echo "session resumable, server holds $off bytes"
		((off <= size)) || {
			echo "server claims $off bytes of a $size-byte blob"
			return 1
		}
		if ((off < size)); then
			tail -c +$((off + 1)) "$file" >"$E2E_TMP/rest"
			code=$(http_req PATCH "$loc" "$E2E_TMP/st" -H 'Content-Type: application/octet-stream' \
				-H "Content-Range: $off-$((size - 1))" --data-binary @"$E2E_TMP/rest")
			expect_eq "PATCH the rest from $off" 202 "$code"
			loc=$(abs_url "$(hdr Location "$E2E_TMP/st.hdr")")
		fi
		code=$(http_req PUT "$(with_query "$loc" "digest=$digest")" "$E2E_TMP/st" \
			-H 'Content-Type: application/octet-stream' --data-binary '')
		expect_eq "PUT ?digest= to finish the resumed upload ($(head -c 200 "$E2E_TMP/st"))" 201 "$code"
		verify_blob "$repo" "$digest" "$size"
		;;
	404)
		expect_match "error code of a lost session" "^($codes)\$" "$(jq -r '.errors[0].code' "$E2E_TMP/st")"
		echo "session gone: 404 $(jq -r '.errors[0].code' "$E2E_TMP/st");" \
			"blob in $repo: $(http_req HEAD "/v2/$repo/blobs/$digest" "$E2E_TMP/hb" || true)"
		;;
	*)
		echo "GET $loc -> $code (want 204 + Range, or 404 BLOB_UPLOAD_UNKNOWN): $(head -c 300 "$E2E_TMP/st")"
		return 1
		;;
	esac
}

# --- after the restart ---------------------------------------------------------

acked_pushes_intact() {
	local dir i d n=0
	for dir in "$IMG"/*; do
		i=$(basename "$dir")
		d=$(grep '^manifest 201' "$dir/status" | cut -d' ' -f3) || continue
		fetch_manifest "e2e/crash-$i" 1 "$E2E_TMP/m.json" "$MT_OCI_MANIFEST"
		expect_eq "manifest of acked push $i by tag" "$d" "$(sha_of "$E2E_TMP/m.json")"
		verify_tree "e2e/crash-$i" "$d"
		n=$((n + 1))
	done
	echo "$n acknowledged pushes verified"
	((n > 0))
}

acked_blobs_intact() {
	local dir d n=0
	for dir in "$IMG"/*; do
		while read -r d; do
			verify_blob "e2e/crash-$(basename "$dir")" "$d" "$(stat -c %s "$dir/blobs/${d#sha256:}")"
			n=$((n + 1))
		done < <(awk '$1 == "blob" && $3 == 201 { print $2 }' "$dir/status")
	done
	echo "$n acknowledged blobs verified"
}

# Whatever the registry serves for the interrupted pushes must be right: each blob
# is either absent (404) or exactly its bytes; a manifest visible under the tag
# (the server finished it but the client never heard) must be complete.
nothing_corrupt() {
	local dir i d code
	for dir in "$IMG"/*; do
		i=$(basename "$dir")
		for d in $(jq -r '(.config, .layers[]).digest' "$dir/manifest.json"); do
			code=$(http_req GET "/v2/e2e/crash-$i/blobs/$d" "$E2E_TMP/b" -L)
			case $code in
			200) expect_eq "bytes of $i@$d" "$d" "$(sha_of "$E2E_TMP/b")" ;;
			404) echo "$i@$d: absent (404)" ;;
			*)
				echo "GET blob $i@$d -> $code"
				return 1
				;;
			esac
		done
		code=$(http_req GET "/v2/e2e/crash-$i/manifests/1" "$E2E_TMP/m" -H "Accept: $ACCEPT_ALL")
		case $code in
		200) verify_tree "e2e/crash-$i" 1 ;;
		404) echo "crash-$i:1 absent (404)" ;;
		*)
			echo "GET manifest crash-$i:1 -> $code"
			return 1
			;;
		esac
	done
}

idle_session() {
	local loc
	read -r loc _ <"$E2E_TMP/idle.progress"
	resume_or_unknown "$loc" "$E2E_TMP/idle.bin" e2e/crash-idle
}

# The sessions that were mid-PATCH when the registry died: same rule, harder case
# (the server may have written part of a chunk it never acknowledged). Refusing such
# a session as BLOB_UPLOAD_INVALID (what Distribution does when the bytes on disk
# outrun the acknowledged offset) is as safe as forgetting it.
inflight_sessions() {
	local p dir hex loc n=0
	for p in "$IMG"/*/progress.*; do
		[[ -e $p ]] || continue
		dir=$(dirname "$p")
		hex=${p##*/progress.}
		grep -q "^blob sha256:$hex 201" "$dir/status" && continue
		read -r loc _ < <(tail -n 1 "$p")
		echo "--- $(basename "$dir") sha256:$hex (last acknowledged: $(tail -n 1 "$p" | cut -d' ' -f2) bytes)"
		resume_or_unknown "$loc" "$dir/blobs/$hex" "e2e/crash-$(basename "$dir")" \
			'BLOB_UPLOAD_UNKNOWN|BLOB_UPLOAD_INVALID'
		n=$((n + 1))
	done
	echo "$n interrupted sessions checked"
}

push_after_restart() {
	make_image 99 300000
	push_image 99 0 ""
	grep -q '^manifest 201' "$IMG/99/status" || {
		cat "$IMG/99/push.log"
		return 1
	}
	verify_tree e2e/crash-99 1
}

step "make $N random images" make_images
step "start an upload and leave it idle" start_idle_upload

log "starting $N concurrent pushes"
pids=()
for ((i = 1; i <= N; i++)); do
	if ((i <= 3)); then
		push_image "$i" 0 "" &
	else
		push_image "$i" "$CHUNK" "$RATE" &
	fi
	pids+=($!)
done

# Kill once the small pushes are acknowledged and the big ones are mid-way.
for ((t = 0; t < 600 && $(acked) < 3; t++)); do sleep 0.1; done
sleep 1.5
log "acknowledged before the crash: $(acked) of $N; kill -9 the registry"
registry_kill9
for ((t = 0; t < 300; t++)); do # clients see the reset at once; 30 s at most
	alive=0
	for p in "${pids[@]}"; do kill -0 "$p" 2>/dev/null && alive=$((alive + 1)); done
	((alive == 0)) && break
	sleep 0.1
done
for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
wait 2>/dev/null || true
for ((i = 1; i <= N; i++)); do log "push $i: $(tr '\n' ';' <"$IMG/$i/status" | sed 's/sha256:\([0-9a-f]\{12\}\)[0-9a-f]*/\1/g')"; done
interrupted=$((N - $(acked)))
log "interrupted pushes: $interrupted"

registry_start # same port, same data dir
check "the crash interrupted at least one push (test is meaningful)" test "$interrupted" -gt 0
check "every acknowledged push (manifest 201) pulls back intact" acked_pushes_intact
check "every acknowledged blob (PUT 201) is still served intact" acked_blobs_intact
check "nothing is served with bytes that do not match its digest" nothing_corrupt
check "the idle upload session resumes (204 + Range) or is unknown (404)" idle_session
check "the upload sessions cut mid-PATCH resume or are unknown" inflight_sessions
check "the registry takes a new push after the restart" push_after_restart

e2e_finish
