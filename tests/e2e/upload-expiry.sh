#!/usr/bin/env bash
# Abandoned uploads are cleaned up by the real binary's background worker:
#   - staged bytes left by a crash (no session owns them) are removed at start;
#   - a session idle longer than uploads.session_ttl_seconds is removed with its
#     bytes (its URL then answers 404 BLOB_UPLOAD_UNKNOWN);
#   - a session that keeps receiving chunks outlives the TTL and finishes (201).
# e2e-timeout: 120
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
berth_only

TTL=4
REG_DATA=$E2E_TMP/data
ORPHAN=00000000-0000-4000-8000-000000000001
mkdir -p "$REG_DATA/uploads"
# What a monolithic push cut short by kill -9 leaves behind: bytes and no session.
head -c 5000000 /dev/urandom >"$REG_DATA/uploads/$ORPHAN"
touch -d '10 minutes ago' "$REG_DATA/uploads/$ORPHAN"
export BERTH_UPLOADS__SESSION_TTL_SECONDS=$TTL
registry_start

# wait_until SECONDS CMD...: CMD succeeds within SECONDS (polled every 0.2 s).
wait_until() {
	local limit=$1 i
	shift
	for ((i = 0; i < limit * 5; i++)); do
		"$@" && return 0
		sleep 0.2
	done
	"$@"
}

orphan_removed() {
	wait_until 5 test ! -e "$REG_DATA/uploads/$ORPHAN"
	grep -q 'unowned staging files' "$REG_LOG"
}

# open_session FILE: POST + one 1000-byte PATCH; writes the session URL to FILE.
open_session() {
	local code
	code=$(http_req POST /v2/e2e/expiry/blobs/uploads/ "$E2E_TMP/post" --data-binary '')
	expect_eq "POST upload" 202 "$code"
	head -c 1000 /dev/urandom >"$1.bytes"
	code=$(http_req PATCH "$(abs_url "$(hdr Location "$E2E_TMP/post.hdr")")" "$E2E_TMP/patch" \
		-H 'Content-Type: application/octet-stream' -H 'Content-Range: 0-999' --data-binary @"$1.bytes")
	expect_eq "PATCH first chunk" 202 "$code"
	abs_url "$(hdr Location "$E2E_TMP/patch.hdr")" >"$1"
}

session_gone() {
	[[ $(http_req GET "$(cat "$1")" "$E2E_TMP/st") == 404 ]]
}

idle_and_busy_sessions() {
	open_session "$E2E_TMP/idle"
	open_session "$E2E_TMP/busy"
	local busy off=1000 i code
	busy=$(cat "$E2E_TMP/busy")
	cat "$E2E_TMP/busy.bytes" >"$E2E_TMP/busy.all"
	# Keep the busy one moving, a chunk a second, for twice the TTL.
	for ((i = 0; i < 2 * TTL; i++)); do
		sleep 1
		head -c 1000 /dev/urandom >"$E2E_TMP/chunk"
		cat "$E2E_TMP/chunk" >>"$E2E_TMP/busy.all"
		code=$(http_req PATCH "$busy" "$E2E_TMP/patch" -H 'Content-Type: application/octet-stream' \
			-H "Content-Range: $off-$((off + 999))" --data-binary @"$E2E_TMP/chunk")
		expect_eq "PATCH chunk $i of the busy session" 202 "$code"
		busy=$(abs_url "$(hdr Location "$E2E_TMP/patch.hdr")")
		off=$((off + 1000))
	done
	wait_until $((TTL + 2)) session_gone "$E2E_TMP/idle"
	http_req GET "$(cat "$E2E_TMP/idle")" "$E2E_TMP/st" >/dev/null
	expect_eq "error of the expired session" BLOB_UPLOAD_UNKNOWN "$(jq -r '.errors[0].code' "$E2E_TMP/st")"
	code=$(http_req PUT "$(with_query "$busy" "digest=$(sha_of "$E2E_TMP/busy.all")")" "$E2E_TMP/put" \
		-H 'Content-Type: application/octet-stream' --data-binary '')
	expect_eq "PUT finishing the busy session" 201 "$code"
	verify_blob e2e/expiry "$(sha_of "$E2E_TMP/busy.all")" "$off"
	# Nothing is left staged.
	expect_eq "files left in uploads/" "" "$(ls "$REG_DATA/uploads")"
}

check "staged bytes no session owns are removed at start" orphan_removed
check "an idle session expires after the TTL; an active one finishes" idle_and_busy_sessions

e2e_finish
