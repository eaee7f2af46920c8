#!/usr/bin/env bash
# podman and buildah against the registry: build, push (OCI and v2s2), pull back, run;
# buildah push; a 2-platform manifest list made with `podman manifest` and pushed with
# --all, then read back.
#
# podman and buildah run on a private storage (vfs driver, in the temp dir) so the
# test neither depends on nor pollutes the machine's image store, and needs no
# overlay/fuse mounts. Containers run with runc and lowered ulimits: podman's default
# RLIMIT_NOFILE/NPROC exceed the hard limits of CI machines ("error setting rlimit
# type 7: operation not permitted").
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
require podman buildah
registry_start

# Private storage and config (lib.sh); registries.conf marks the plain-HTTP registry
# insecure, which commands without a --tls-verify flag (podman 4.3's `manifest
# inspect`) need.
containers_private_env
# vfs layers are plain directories; `podman system reset` is not needed, rm -rf is.
on_exit "podman rm -af; podman rmi -af"

T=(--tls-verify=false)
MSG="hello from podman $REG_PORT"
LOCAL=localhost/berth-e2e/podman:1

# build_image TAG MESSAGE [ARCH]: FROM scratch + busybox; COPY only, so a foreign
# --arch builds without emulation (the config just records the architecture).
build_image() {
	local tag=$1 msg=$2 arch=${3:-amd64} ctx
	ctx=$(mktemp -d "$E2E_TMP/ctx.XXXXXX")
	make_busybox_rootfs "$ctx/root" "$msg ($arch)"
	printf 'FROM scratch\nCOPY root/ /\nCMD ["/bin/busybox", "echo", "%s"]\n' "$msg" >"$ctx/Containerfile"
	tmo podman build -q --arch "$arch" --os linux -t "$tag" "$ctx"
}

build() {
	build_image "$LOCAL" "$MSG"
	expect_eq "podman run" "$MSG" "$(tmo podman run --rm "$LOCAL")"
}

push() { # FORMAT TAG
	tmo podman push "${T[@]}" --format "$1" "$LOCAL" "docker://$REG/e2e/podman:$2"
	tmo podman inspect --format '{{.Digest}}' "$LOCAL" # for the log
	fetch_manifest e2e/podman "$2" "$E2E_TMP/m-$1.json"
	case $1 in
	oci) expect_eq mediaType "$MT_OCI_MANIFEST" "$(jq -r .mediaType "$E2E_TMP/m-$1.json")" ;;
	v2s2) expect_eq mediaType "$MT_DOCKER_MANIFEST" "$(jq -r .mediaType "$E2E_TMP/m-$1.json")" ;;
	esac
	verify_tree e2e/podman "$2"
}

pull_and_run() { # FORMAT TAG (as pushed by `push`)
	local img=$REG/e2e/podman:$2
	tmo podman rmi -af
	refute podman image exists "$LOCAL"
	tmo podman pull "${T[@]}" "$img"
	expect_eq "podman run of the pulled image" "$MSG" "$(tmo podman run --rm "$img")"
	# the image's digest as podman saw it is the registry's manifest digest
	expect_eq "pulled digest" "$(sha_of "$E2E_TMP/m-$1.json")" \
		"$(podman image inspect --format '{{.Digest}}' "$img")"
}

buildah_push() {
	local ctr img=localhost/berth-e2e/buildah:1
	ctr=$(buildah from scratch)
	make_busybox_rootfs "$E2E_TMP/broot" "hello from buildah"
	buildah copy "$ctr" "$E2E_TMP/broot/" /
	buildah config --cmd '["/bin/busybox","echo","hello from buildah"]' "$ctr"
	buildah commit -q "$ctr" "$img"
	buildah rm "$ctr"
	tmo buildah push "${T[@]}" "$img" "docker://$REG/e2e/buildah:1"
	verify_tree e2e/buildah 1
	buildah rmi "$img"
	tmo podman pull "${T[@]}" "$REG/e2e/buildah:1"
	expect_eq "run the buildah image" "hello from buildah" "$(tmo podman run --rm "$REG/e2e/buildah:1")"
}

manifest_list() {
	local list=localhost/berth-e2e/list:1 remote=$REG/e2e/podman-list:1 arch out
	for arch in amd64 arm64; do
		build_image "localhost/berth-e2e/multi:$arch" "hello multi" "$arch"
	done
	tmo podman manifest create "$list"
	for arch in amd64 arm64; do
		tmo podman manifest add "$list" "containers-storage:localhost/berth-e2e/multi:$arch"
	done
	tmo podman manifest push --all "${T[@]}" "$list" "docker://$remote"
	out=$E2E_TMP/list.json
	fetch_manifest e2e/podman-list 1 "$out"
	jq . "$out"
	expect_eq "platforms in the pushed list" "amd64 arm64" \
		"$(jq -r '[.manifests[].platform.architecture] | sort | join(" ")' "$out")"
	verify_tree e2e/podman-list 1
	# read it back: remote manifest inspect, then pull (resolves to this machine's arch)
	tmo podman manifest inspect "$remote" | jq -e '.manifests | length == 2'
	tmo podman rmi -af
	tmo podman pull "${T[@]}" "$remote"
	expect_eq "pulled architecture" amd64 "$(podman image inspect --format '{{.Architecture}}' "$remote")"
	expect_eq "run the pulled list image" "hello multi" "$(tmo podman run --rm "$remote")"
	tmo podman pull "${T[@]}" --arch arm64 "$remote"
	expect_eq "pulled --arch arm64" arm64 "$(podman image inspect --format '{{.Architecture}}' "$remote")"
}

step "podman build a FROM-scratch busybox image and run it" build
check "podman push --format oci" push oci 1
check "podman push --format v2s2" push v2s2 2
check "podman pull (OCI manifest) and run" pull_and_run oci 1
check "podman pull (v2s2 manifest) and run" pull_and_run v2s2 2
check "buildah push, podman pull and run" buildah_push
check "podman manifest create/add, push --all, read back" manifest_list

e2e_finish
