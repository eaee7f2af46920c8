#!/usr/bin/env bash
# A full disk: berth's data directory on a small tmpfs. Push until the disk is full,
# keep writing while it is full, free the space, write again, restart; then check
# what a user relies on:
#   - writes refused while the disk is full answer an OCI error (5xx), never 201/202;
#   - after space is freed, writes succeed again and are really stored: every manifest
#     PUT that got 201 pulls back (manifest and blobs, digest for digest) after the
#     restart, every tag DELETE that got 202 stays deleted;
#   - nothing else is visible: a tag whose PUT failed is absent, and each repository's
#     tag list is exactly the acknowledged tags.
# e2e-timeout: 240
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
berth_only
((EUID == 0)) || die "mounting a tmpfs needs root"

MNT=$E2E_TMP/small
mkdir -p "$MNT"
mount -t tmpfs -o size=24m tmpfs "$MNT" || die "cannot mount a tmpfs on $MNT"
# Stop the registry before unmounting (cleanups run last-registered first).
on_exit "umount -l '$MNT'"
on_exit registry_stop
REG_DATA=$MNT/data
registry_start

BASE=$E2E_TMP/base
LEDGER=$E2E_TMP/ledger # "put REPO TAG DIGEST CODE" and "del REPO TAG CODE", in order
: >"$LEDGER"

# put_padded REPO TAG: PUT the base image's manifest with a 256 KiB annotation that
# makes it unique (and makes the database grow by that much); logs it in the ledger.
put_padded() {
	local repo=$1 tag=$2 m code
	m=$E2E_TMP/m.$tag.json
	head -c 131072 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$m.pad"
	jq -c --rawfile pad "$m.pad" '.annotations = {"e2e.pad": $pad}' "$BASE/manifest.json" >"$m"
	code=$(http_req PUT "/v2/$repo/manifests/$tag" "$m.out" -H "Content-Type: $MT_OCI_MANIFEST" \
		--data-binary @"$m") || code=curl-error
	echo "put $repo $tag $(sha_of "$m") $code" >>"$LEDGER"
	echo "PUT $repo:$tag -> $code"
	[[ $code == 201 ]] || cat "$m.out"
	echo
}

# del_tag REPO TAG: DELETE the tag; logs it in the ledger.
del_tag() {
	local code
	code=$(http_req DELETE "/v2/$1/manifests/$2" "$E2E_TMP/del.out") || code=curl-error
	echo "del $1 $2 $code" >>"$LEDGER"
	echo "DELETE $1:$2 -> $code"
}

push_base() {
	make_random_image "$BASE" base 262144 524288
	push_random_image "$BASE" e2e/full base 0 ""
	cat "$BASE/push.log" 2>/dev/null || true
	grep -q '^manifest 201' "$BASE/status"
	echo "put e2e/full base $(sha_of "$BASE/manifest.json") 201" >>"$LEDGER"
	put_padded e2e/full doomed
	put_padded e2e/full kept
}

fill_disk() {
	dd if=/dev/zero of="$MNT/ballast" bs=64k 2>&1 | tail -n 1 || true
	df -k "$MNT"
}

# While the disk is full: big manifest PUTs, a tag delete and a new image's blobs.
write_while_full() {
	local k
	for k in 1 2 3 4 5 6; do put_padded e2e/full "full-$k"; done
	del_tag e2e/full doomed
	make_random_image "$E2E_TMP/img-full" full 1048576
	push_random_image "$E2E_TMP/img-full" e2e/other full 0 ""
	cat "$E2E_TMP/img-full/status"
}

# Every write refused while full answered 5xx with an OCI error body; at least one
# write was refused (or the test proves nothing).
refusals_are_errors() {
	local refused n
	refused=$(awk '$1 == "put" && $5 != 201 { print $3 ":" $5 } $1 == "del" && $4 != 202 { print $3 ":" $4 }' "$LEDGER")
	echo "refused while full: ${refused:-none}"
	n=$(wc -w <<<"$refused")
	((n > 0))
	for r in $refused; do expect_match "status of refused write $r" ':5[0-9][0-9]$' "$r"; done
	grep -q '^blob .* failed' "$E2E_TMP/img-full/status"
	jq -e '.errors[0].code | length > 0' "$E2E_TMP"/m.full-*.json.out >/dev/null
}

# After freeing space: every kind of write must work, and report success only once stored.
write_after_freeing() {
	rm -f "$MNT/ballast"
	df -k "$MNT"
	local k
	for k in 1 2 3; do
		put_padded e2e/full "after-$k"
		grep -q "^put e2e/full after-$k .* 201\$" "$LEDGER"
	done
	del_tag e2e/full doomed
	grep -q '^del e2e/full doomed 202$' "$LEDGER"
	make_random_image "$E2E_TMP/img-after" after 1048576
	push_random_image "$E2E_TMP/img-after" e2e/other after 0 ""
	cat "$E2E_TMP/img-after/status"
	grep -q '^manifest 201' "$E2E_TMP/img-after/status"
	echo "put e2e/other after $(sha_of "$E2E_TMP/img-after/manifest.json") 201" >>"$LEDGER"
}

# The ledger's last word on each tag: "REPO TAG DIGEST" for every live tag.
live_tags() {
	awk '$1 == "put" && $5 == 201 { live[$2 " " $3] = $4 }
	     $1 == "del" && $4 == 202 { delete live[$2 " " $3] }
	     END { for (k in live) print k, live[k] }' "$LEDGER" | sort
}

acked_tags_pull_back() {
	local repo tag digest n=0
	while read -r repo tag digest; do
		fetch_manifest "$repo" "$tag" "$E2E_TMP/got.json"
		expect_eq "digest of $repo:$tag" "$digest" "$(sha_of "$E2E_TMP/got.json")"
		verify_tree "$repo" "$digest" >/dev/null
		n=$((n + 1))
	done < <(live_tags)
	echo "$n acknowledged tags pull back intact"
	((n >= 6))
}

tag_lists_exact() {
	local repo
	for repo in e2e/full e2e/other; do
		expect_eq "tags of $repo" "$(live_tags | awk -v r="$repo" '$1 == r { print $2 }' | sort | tr '\n' ' ')" \
			"$(tags_of "$repo" | tr '\n' ' ')"
	done
}

unacked_absent() {
	local tag code
	for tag in $(awk '$1 == "put" && $5 != 201 { print $3 }' "$LEDGER") doomed; do
		live_tags | grep -q "^e2e/full $tag " && continue
		code=$(http_req GET "/v2/e2e/full/manifests/$tag" "$E2E_TMP/absent" -H "Accept: $ACCEPT_ALL")
		expect_eq "GET e2e/full:$tag (never acknowledged, or deleted)" 404 "$code"
	done
}

step "push a base image and two tags" push_base
step "fill the disk" fill_disk
step "write while the disk is full" write_while_full
check "writes refused while full are OCI errors (5xx), and some were refused" refusals_are_errors
check "after freeing space, manifest PUTs, tag DELETEs and blob pushes succeed" write_after_freeing
log "ledger:"
sed 's/sha256:\([0-9a-f]\{12\}\)[0-9a-f]*/\1/' "$LEDGER" >&2

registry_stop
registry_start # same port, same data dir
check "every acknowledged tag pulls back intact after a restart" acked_tags_pull_back
check "tag lists hold exactly the acknowledged tags" tag_lists_exact
check "deleted or refused tags are absent" unacked_absent

e2e_finish
