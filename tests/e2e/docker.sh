#!/usr/bin/env bash
# docker against the registry: build a FROM-scratch busybox image, push, remove it
# locally, pull it back, run it; a second tag; pull by digest; buildx multi-platform
# push when buildx exists. Docker treats 127.0.0.0/8 registries as insecure (plain
# HTTP) by itself, so no daemon configuration is needed.
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
require docker
docker info >/dev/null 2>&1 || die "docker info failed: is the Docker daemon running?"
registry_start

REPO=e2e/busybox
IMG=$REG/$REPO
LOCAL=berth-e2e/busybox:$REG_PORT
MSG="hello from berth e2e $REG_PORT"
on_exit "docker rmi -f $LOCAL $IMG:1 $IMG:2 $IMG:3"

build() {
	docker_build_busybox "$LOCAL" "$MSG" >"$E2E_TMP/image-id"
	docker tag "$LOCAL" "$IMG:1"
	[[ $(docker run --rm --network none "$LOCAL") == "$MSG" ]]
}

push() {
	tmo docker push "$IMG:1" | tee "$E2E_TMP/push1.out"
	grep -q 'Pushed' "$E2E_TMP/push1.out"
	# "1: digest: sha256:... size: 528"
	grep -o 'digest: sha256:[0-9a-f]\{64\}' "$E2E_TMP/push1.out" | cut -d' ' -f2 >"$E2E_TMP/digest"
	[[ -s $E2E_TMP/digest ]]
}

registry_view() {
	local d out
	d=$(cat "$E2E_TMP/digest")
	out=$E2E_TMP/m.json
	fetch_manifest "$REPO" 1 "$out" "$MT_DOCKER_MANIFEST"
	expect_eq "manifest digest by tag" "$d" "$(sha_of "$out")"
	expect_eq "config digest = image ID" "$(cat "$E2E_TMP/image-id")" "$(jq -r .config.digest "$out")"
	# HEAD answers the same digest without a body.
	[[ $(http_req HEAD "/v2/$REPO/manifests/1" "$E2E_TMP/head" -H "Accept: $MT_DOCKER_MANIFEST") == 200 ]]
	expect_eq "HEAD Docker-Content-Digest" "$d" "$(hdr Docker-Content-Digest "$E2E_TMP/head.hdr")"
	verify_tree "$REPO" "$d"
}

remove_local() {
	docker rmi "$IMG:1" "$LOCAL"
	refute docker image inspect "$IMG:1" >/dev/null 2>&1
}

pull_and_run() {
	local d
	d=$(cat "$E2E_TMP/digest")
	tmo docker pull "$IMG:1" | tee "$E2E_TMP/pull.out"
	grep -q "Digest: $d" "$E2E_TMP/pull.out"
	expect_eq "pulled image ID" "$(cat "$E2E_TMP/image-id")" "$(docker image inspect -f '{{.Id}}' "$IMG:1")"
	expect_eq "output of docker run" "$MSG" "$(docker run --rm --network none "$IMG:1")"
}

second_tag() {
	local d
	d=$(cat "$E2E_TMP/digest")
	docker tag "$IMG:1" "$IMG:2"
	tmo docker push "$IMG:2" | tee "$E2E_TMP/push2.out"
	# Every layer is already there: nothing may be uploaded again.
	refute grep -q 'Pushed' "$E2E_TMP/push2.out"
	grep -q "2: digest: $d" "$E2E_TMP/push2.out"
	expect_eq "tags of $REPO" "$(printf '1\n2')" "$(tags_of "$REPO")"
}

pull_by_digest() {
	local d
	d=$(cat "$E2E_TMP/digest")
	docker rmi "$IMG:1" "$IMG:2"
	tmo docker pull "$IMG@$d"
	expect_eq "output of docker run by digest" "$MSG" "$(docker run --rm --network none "$IMG@$d")"
	docker rmi "$IMG@$d"
}

# A different image under a third tag: new content, new digest, tag list grows.
other_image() {
	docker_build_busybox "$IMG:3" "another $MSG" >/dev/null
	tmo docker push "$IMG:3" | tee "$E2E_TMP/push3.out"
	grep -q 'Pushed' "$E2E_TMP/push3.out"
	fetch_manifest "$REPO" 3 "$E2E_TMP/m3.json" "$MT_DOCKER_MANIFEST"
	[[ $(sha_of "$E2E_TMP/m3.json") != "$(cat "$E2E_TMP/digest")" ]]
	expect_eq "tags of $REPO" "$(printf '1\n2\n3')" "$(tags_of "$REPO")"
}

buildx_multiplatform() {
	local ctx=$E2E_TMP/bx
	make_busybox_rootfs "$ctx/root" "buildx $MSG"
	printf 'FROM scratch\nCOPY root/ /\nCMD ["/bin/busybox","echo","buildx"]\n' >"$ctx/Dockerfile"
	tmo docker buildx build --platform linux/amd64,linux/arm64 --push -t "$IMG-multi:1" "$ctx"
	fetch_manifest "$REPO-multi" 1 "$E2E_TMP/bx.json"
	[[ $(jq '.manifests | length' "$E2E_TMP/bx.json") -ge 2 ]]
	verify_tree "$REPO-multi" 1
}

step "docker build a FROM-scratch busybox image" build
step "docker push $IMG:1" push
check "registry serves the pushed manifest and blobs intact" registry_view
step "docker rmi the local copies" remove_local
check "docker pull $IMG:1 and run it" pull_and_run
check "docker push a second tag (no layer re-upload)" second_tag
check "docker pull by digest and run it" pull_by_digest
check "docker push a different image as tag 3" other_image

if docker buildx version >/dev/null 2>&1 &&
	docker buildx inspect 2>/dev/null | grep -q 'linux/arm64'; then
	check "docker buildx multi-platform push" buildx_multiplatform
else
	skip "docker buildx multi-platform push: no buildx with a linux/arm64 builder here"
fi

e2e_finish
