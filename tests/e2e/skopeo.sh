#!/usr/bin/env bash
# skopeo against the registry: copy an OCI layout in and out in both manifest formats
# (OCI and Docker v2s2), inspect, list-tags, delete, copy --all of a 2-platform index,
# and copy from the Docker daemon. The layout is written by hand (lib.sh) so every
# digest is known before the push and can be compared byte for byte afterwards.
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
require skopeo
registry_start

L=$E2E_TMP/layout
T=(--tls-verify=false)
SRC=(--src-tls-verify=false)
DST=(--dest-tls-verify=false)

build_layout() {
	oci_add_image "$L" 1 amd64 "hello skopeo" >"$E2E_TMP/single.digest"
	oci_add_image "$L" amd64 amd64 "hello multi" >"$E2E_TMP/amd64.digest"
	oci_add_image "$L" arm64 arm64 "hello multi" >"$E2E_TMP/arm64.digest"
	oci_add_index "$L" multi "$(cat "$E2E_TMP/amd64.digest")" "$(cat "$E2E_TMP/arm64.digest")" >"$E2E_TMP/index.digest"
	tmo skopeo inspect --raw "oci:$L:multi" | jq -e '.manifests | length == 2'
	oci_verify_layout "$L"
}

# layers_of FILE: "config layer..." digests of a manifest, one line.
layers_of() { jq -r '[.config.digest, .layers[].digest] | join(" ")' "$1"; }

copy_in() { # FORMAT
	local fmt=$1 repo=e2e/skopeo-$1 raw=$E2E_TMP/raw-$1.json want_mt
	tmo skopeo copy --format "$fmt" "${DST[@]}" "oci:$L:1" "docker://$REG/$repo:1"
	tmo skopeo inspect --raw "${T[@]}" "docker://$REG/$repo:1" >"$raw"
	case $fmt in
	oci)
		want_mt=$MT_OCI_MANIFEST
		# No conversion: the registry must hold exactly the layout's bytes.
		expect_eq "manifest digest" "$(cat "$E2E_TMP/single.digest")" "$(sha_of "$raw")"
		;;
	v2s2) want_mt=$MT_DOCKER_MANIFEST ;;
	esac
	expect_eq "mediaType" "$want_mt" "$(jq -r .mediaType "$raw")"
	# Converting the manifest format must not touch config or layer blobs.
	expect_eq "config + layer digests" "$(layers_of "$(oci_blob_path "$L" "$(cat "$E2E_TMP/single.digest")")")" "$(layers_of "$raw")"
	tmo skopeo inspect "${T[@]}" "docker://$REG/$repo:1" >"$E2E_TMP/inspect-$fmt.json"
	expect_eq "skopeo inspect .Digest" "$(sha_of "$raw")" "$(jq -r .Digest "$E2E_TMP/inspect-$fmt.json")"
	expect_eq "skopeo inspect .Architecture" amd64 "$(jq -r .Architecture "$E2E_TMP/inspect-$fmt.json")"
	expect_eq "HEAD Content-Type" "$want_mt" \
		"$(http_req HEAD "/v2/$repo/manifests/1" "$E2E_TMP/h" -H "Accept: $want_mt" >/dev/null && hdr Content-Type "$E2E_TMP/h.hdr")"
	expect_eq "HEAD Docker-Content-Digest" "$(sha_of "$raw")" "$(hdr Docker-Content-Digest "$E2E_TMP/h.hdr")"
	verify_tree "$repo" 1
}

copy_out() { # FORMAT
	local fmt=$1 repo=e2e/skopeo-$1 raw=$E2E_TMP/raw-$1.json d=$E2E_TMP/dir-$1 o=$E2E_TMP/back-$1
	# dir: keeps the manifest as served, byte for byte.
	tmo skopeo copy "${SRC[@]}" "docker://$REG/$repo:1" "dir:$d"
	expect_eq "manifest pulled into dir:" "$(sha_of "$raw")" "$(sha_of "$d/manifest.json")"
	local f
	for f in $(jq -r '(.config, .layers[]).digest' "$d/manifest.json"); do
		expect_eq "pulled blob" "$f" "$(sha_of "$d/${f#sha256:}")"
	done
	# oci: (converts v2s2 back to OCI); the blobs must survive the round trip.
	tmo skopeo copy "${SRC[@]}" "docker://$REG/$repo:1" "oci:$o:1"
	oci_verify_layout "$o"
	tmo skopeo inspect --raw "oci:$o:1" >"$E2E_TMP/back-$fmt.json"
	# (v2s2 -> OCI conversion re-serializes the config, so only layers must match.)
	expect_eq "layer digests after the round trip" "$(jq -c '[.layers[].digest]' "$raw")" \
		"$(jq -c '[.layers[].digest]' "$E2E_TMP/back-$fmt.json")"
}

list_tags() {
	local repo=e2e/skopeo-oci
	# registry -> registry copy under a second tag
	tmo skopeo copy "${SRC[@]}" "${DST[@]}" "docker://$REG/$repo:1" "docker://$REG/$repo:2"
	tmo skopeo list-tags "${T[@]}" "docker://$REG/$repo" >"$E2E_TMP/tags.json"
	cat "$E2E_TMP/tags.json"
	expect_eq "tags" '["1","2"]' "$(jq -c '.Tags | sort' "$E2E_TMP/tags.json")"
}

delete() {
	local repo=e2e/skopeo-del d code
	d=$(cat "$E2E_TMP/single.digest")
	tmo skopeo copy "${DST[@]}" "oci:$L:1" "docker://$REG/$repo:1"
	tmo skopeo delete "${T[@]}" "docker://$REG/$repo:1"
	code=$(http_req GET "/v2/$repo/manifests/$d" "$E2E_TMP/del" -H "Accept: $ACCEPT_ALL")
	expect_eq "GET deleted manifest by digest" 404 "$code"
	expect_eq "error code" MANIFEST_UNKNOWN "$(jq -r '.errors[0].code' "$E2E_TMP/del")"
	refute tmo skopeo inspect --raw "${T[@]}" "docker://$REG/$repo:1"
	# Pushing the same content again after a delete must work and be served again.
	tmo skopeo copy "${DST[@]}" "oci:$L:1" "docker://$REG/$repo:1"
	verify_tree "$repo" "$d"
}

copy_all_index() {
	local repo=e2e/multi idx out child arch
	idx=$(cat "$E2E_TMP/index.digest")
	tmo skopeo copy --all "${DST[@]}" "oci:$L:multi" "docker://$REG/$repo:1"
	out=$E2E_TMP/index.json
	fetch_manifest "$repo" 1 "$out" "$MT_OCI_INDEX"
	expect_eq "index digest" "$idx" "$(sha_of "$out")"
	expect_eq "index Content-Type" "$MT_OCI_INDEX" "$(hdr Content-Type "$out.hdr")"
	expect_eq "children" 2 "$(jq '.manifests | length' "$out")"
	# every child manifest (and its blobs) is retrievable by digest
	for child in $(jq -r '.manifests[].digest' "$out"); do
		fetch_manifest "$repo" "$child" "$E2E_TMP/child.json" "$MT_OCI_MANIFEST"
		expect_eq "child Content-Type" "$MT_OCI_MANIFEST" "$(hdr Content-Type "$E2E_TMP/child.json.hdr")"
	done
	verify_tree "$repo" 1
	# platform selection through the index
	for arch in amd64 arm64; do
		tmo skopeo inspect "${T[@]}" --override-arch "$arch" "docker://$REG/$repo:1" >"$E2E_TMP/i-$arch.json"
		# (.Digest is the index's own; the resolved image shows in .Layers)
		expect_eq "resolved $arch layers" \
			"$(jq -c '[.layers[].digest]' "$(oci_blob_path "$L" "$(cat "$E2E_TMP/$arch.digest")")")" \
			"$(jq -c .Layers "$E2E_TMP/i-$arch.json")"
		expect_eq "resolved $arch architecture" "$arch" "$(jq -r .Architecture "$E2E_TMP/i-$arch.json")"
	done
	# and back out, whole
	tmo skopeo copy --all "${SRC[@]}" "docker://$REG/$repo:1" "oci:$E2E_TMP/multi-back:1"
	expect_eq "index digest after copy --all back" "$idx" \
		"$(tmo skopeo inspect --raw "oci:$E2E_TMP/multi-back:1" | sha256sum | sed 's/^/sha256:/; s/ .*//')"
	oci_verify_layout "$E2E_TMP/multi-back"
}

from_docker_daemon() {
	local tag=berth-e2e/skopeo:$REG_PORT id
	id=$(docker_build_busybox "$tag" "hello from the daemon")
	tmo skopeo copy "${DST[@]}" "docker-daemon:$tag" "docker://$REG/e2e/skopeo-daemon:1"
	tmo skopeo inspect --raw "${T[@]}" "docker://$REG/e2e/skopeo-daemon:1" >"$E2E_TMP/daemon.json"
	expect_eq "config digest = docker image ID" "$id" "$(jq -r .config.digest "$E2E_TMP/daemon.json")"
	verify_tree e2e/skopeo-daemon 1
}

step "write an OCI layout (image + 2-platform index) by hand" build_layout
for fmt in oci v2s2; do
	check "skopeo copy --format $fmt oci: -> registry, inspect" copy_in "$fmt"
	check "skopeo copy registry -> dir: and oci: ($fmt), bytes intact" copy_out "$fmt"
done
check "skopeo copy registry -> registry, list-tags" list_tags
check "skopeo delete, then push again" delete
check "skopeo copy --all of a 2-platform OCI index" copy_all_index
if docker info >/dev/null 2>&1; then
	on_exit "docker rmi -f berth-e2e/skopeo:$REG_PORT"
	check "skopeo copy docker-daemon: -> registry" from_docker_daemon
else
	skip "skopeo copy docker-daemon: (no Docker daemon)"
fi

e2e_finish
