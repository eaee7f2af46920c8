#!/usr/bin/env bash
# e2e-timeout: 1200   (the first run debootstraps a Debian rootfs; later runs use the cache)
#
# A realistic multi-layer image: a debootstrap'd Debian minbase rootfs imported as the
# base layer, plus two layers from a Dockerfile (RUN and COPY, ~8 MiB of random data).
#   A. docker push to e2e/debian:1; the registry holds exactly that (manifest digest,
#      config = image ID, each gzip layer unpacks to the diff_id skopeo reported from
#      the daemon before the push); docker rmi + pull gives back the same image; it runs.
#   B. docker push of the same image to other/debian:1 mounts every layer across
#      repositories instead of uploading it again.
#   C. skopeo: the image as an OCI layout (digests fixed before the push), pushed and
#      pulled back byte-identical.
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
require docker skopeo debootstrap
docker info >/dev/null 2>&1 || die "docker info failed: is the Docker daemon running?"

ROOTFS_TAR=$DEBIAN_ROOTFS_TAR

step "Debian $DEBIAN_SUITE minbase rootfs (debootstrap, cached)" ensure_debian_rootfs

registry_start
BASE=berth-e2e/debian-base:$REG_PORT
LOCAL=berth-e2e/debian:$REG_PORT
IMG=$REG/e2e/debian:1
OTHER=$REG/other/debian:1
on_exit "docker rmi -f $LOCAL $IMG $OTHER $BASE"
OUTPUT="built for berth e2e $REG_PORT"

build() {
	local ctx=$E2E_TMP/ctx
	mkdir -p "$ctx"
	tmo docker import "$ROOTFS_TAR" "$BASE"
	head -c $((5 * 1048576)) /dev/urandom >"$ctx/payload.bin"
	cat >"$ctx/Dockerfile" <<-EOF
		FROM $BASE
		RUN echo "$OUTPUT" > /etc/berth-e2e && head -c 3145728 /dev/urandom > /opt/run-layer.bin
		COPY payload.bin /opt/payload.bin
		CMD ["cat", "/etc/berth-e2e"]
	EOF
	tmo docker build --network none -q -t "$LOCAL" "$ctx"
	expect_eq "docker run" "$OUTPUT" "$(docker run --rm --network none "$LOCAL")"
	# Before any push: what the daemon holds, as skopeo reports it (uncompressed
	# layer digests = diff_ids, config digest = image ID).
	tmo skopeo inspect --raw "docker-daemon:$LOCAL" >"$E2E_TMP/pre.json"
	jq -r '[.layers[].digest] | join(" ")' "$E2E_TMP/pre.json" >"$E2E_TMP/pre.layers"
	jq -r .config.digest "$E2E_TMP/pre.json" >"$E2E_TMP/pre.config"
	expect_eq "layers in the image" 3 "$(jq '.layers | length' "$E2E_TMP/pre.json")"
	expect_eq "skopeo's config digest = docker image ID" "$(docker image inspect -f '{{.Id}}' "$LOCAL")" "$(cat "$E2E_TMP/pre.config")"
}

docker_push() {
	docker tag "$LOCAL" "$IMG"
	tmo docker push "$IMG" | tee "$E2E_TMP/push.out"
	grep -o 'digest: sha256:[0-9a-f]\{64\}' "$E2E_TMP/push.out" | cut -d' ' -f2 >"$E2E_TMP/digest"
	expect_eq "layers pushed" 3 "$(grep -c ': Pushed' "$E2E_TMP/push.out")"
}

registry_holds_it() {
	local raw=$E2E_TMP/remote.json i=0 d diffids
	read -ra diffids <"$E2E_TMP/pre.layers"
	tmo skopeo inspect --raw --tls-verify=false "docker://$IMG" >"$raw"
	expect_eq "manifest digest (docker push vs registry)" "$(cat "$E2E_TMP/digest")" "$(sha_of "$raw")"
	expect_eq "config digest" "$(cat "$E2E_TMP/pre.config")" "$(jq -r .config.digest "$raw")"
	expect_eq "layer count" 3 "$(jq '.layers | length' "$raw")"
	verify_tree e2e/debian 1
	for d in $(jq -r '.layers[].digest' "$raw"); do
		http_req GET "/v2/e2e/debian/blobs/$d" "$E2E_TMP/layer" -L >/dev/null
		expect_eq "layer $i unpacks to the pre-push diff_id" "${diffids[i]}" \
			"sha256:$(gzip -dc "$E2E_TMP/layer" | sha256sum | cut -d' ' -f1)"
		i=$((i + 1))
	done
}

pull_back() {
	docker rmi "$IMG" "$LOCAL" "$BASE"
	refute docker image inspect "$IMG"
	tmo docker pull "$IMG" | tee "$E2E_TMP/pull.out"
	expect_eq "layers downloaded" 3 "$(grep -c ': Pull complete' "$E2E_TMP/pull.out")"
	grep -q "Digest: $(cat "$E2E_TMP/digest")" "$E2E_TMP/pull.out"
	expect_eq "image ID after the pull" "$(cat "$E2E_TMP/pre.config")" "$(docker image inspect -f '{{.Id}}' "$IMG")"
	expect_eq "layer diff_ids after the pull" "$(cat "$E2E_TMP/pre.layers")" \
		"$(docker image inspect -f '{{join .RootFS.Layers " "}}' "$IMG")"
	expect_eq "docker run of the pulled image" "$OUTPUT" "$(docker run --rm --network none "$IMG")"
}

cross_repo_mount() {
	local uploads d
	docker tag "$IMG" "$OTHER"
	tmo docker push "$OTHER" | tee "$E2E_TMP/push2.out"
	# docker asks POST .../blobs/uploads/?mount=DIGEST&from=e2e/debian and prints this
	# only when the registry answered 201 Created (mounted, nothing sent).
	expect_eq "layers mounted from e2e/debian" 3 "$(grep -c 'Mounted from e2e/debian' "$E2E_TMP/push2.out")"
	expect_eq "layers uploaded" 0 "$(grep -c ': Pushed' "$E2E_TMP/push2.out" || true)"
	grep -q "digest: $(cat "$E2E_TMP/digest")" "$E2E_TMP/push2.out"
	verify_tree other/debian 1
	# Server side, when its log shows request URIs: no upload into other/debian names
	# a layer digest except the mount requests. (The small config blob is not mounted
	# by docker: it is uploaded, and that is fine.)
	local -a hexes=()
	for d in $(jq -r '.layers[].digest' "$E2E_TMP/remote.json"); do hexes+=(-e "${d#sha256:}"); done
	uploads=$(grep 'other/debian/blobs/uploads' "$REG_LOG" | grep -v 'mount=' | grep -c "${hexes[@]}" || true)
	expect_eq "layer uploads into other/debian seen in the registry log" 0 "$uploads"
	echo "registry log lines with mount= for other/debian: $(grep 'other/debian/blobs/uploads' "$REG_LOG" | grep -c 'mount=' || true)"
}

skopeo_oci_layout() {
	local L=$E2E_TMP/layout pre=$E2E_TMP/layout.json m
	# compress once, locally: from here on every digest is fixed
	tmo skopeo copy --dest-compress "docker-daemon:$IMG" "oci:$L:1"
	tmo skopeo inspect --raw "oci:$L:1" >"$pre"
	m=$(sha_of "$pre")
	tmo skopeo copy --dest-tls-verify=false "oci:$L:1" "docker://$REG/e2e/debian:oci"
	http_req HEAD /v2/e2e/debian/manifests/oci "$E2E_TMP/h" -H "Accept: $MT_OCI_MANIFEST" >/dev/null
	expect_eq "manifest digest known before the push" "$m" "$(hdr Docker-Content-Digest "$E2E_TMP/h.hdr")"
	tmo skopeo inspect --raw --tls-verify=false "docker://$REG/e2e/debian:oci" >"$E2E_TMP/remote-oci.json"
	cmp "$pre" "$E2E_TMP/remote-oci.json"
	verify_tree e2e/debian oci
	tmo skopeo copy --src-tls-verify=false "docker://$REG/e2e/debian:oci" "oci:$E2E_TMP/back:1"
	expect_eq "manifest digest after the round trip" "$m" "$(tmo skopeo inspect --raw "oci:$E2E_TMP/back:1" | sha256sum | sed 's/^/sha256:/; s/ .*//')"
	oci_verify_layout "$E2E_TMP/back"
	diff <(ls "$L/blobs/sha256") <(ls "$E2E_TMP/back/blobs/sha256")
}

step "build a 3-layer image (import + RUN + COPY)" build
step "docker push $IMG" docker_push
check "the registry holds exactly the pushed image" registry_holds_it
check "docker rmi, pull back: same digest, image ID, layers; runs" pull_back
check "docker push to other/debian mounts every layer (no upload)" cross_repo_mount
check "skopeo: OCI layout push keeps pre-computed digests, round trip" skopeo_oci_layout

e2e_finish
