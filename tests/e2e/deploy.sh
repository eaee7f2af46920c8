#!/usr/bin/env bash
# The container image operators run (deploy/Dockerfile), built and run on the local
# Docker engine. Nothing can be pulled here, so the Dockerfile's BASE is a base image
# made on the spot (`docker import` of the loader and libraries berth links against,
# busybox for the build's shell, the host's CA bundle) instead of debian:bookworm-slim.
# The image must: build from the repository with only the binary in the context;
# run as a non-root user owning /data; answer /healthz and /readyz; refuse anonymous
# pushes (authentication is on); take a docker login as the first admin (password
# from BERTH_ADMIN_PASSWORD), a push and a pull; stop gracefully on `docker stop`;
# and, replaced by a new container on the same volume, still serve what was pushed.
# Then the same Dockerfile on a Debian minbase rootfs (debootstrap'd once, cached, as
# realistic.sh does), the way it builds on debian:bookworm-slim: apt installs the CA
# bundle in the build.
# e2e-timeout: 1200   (the first run debootstraps a Debian rootfs; later runs use the cache)
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
berth_only
require docker ldd
docker info >/dev/null 2>&1 || die "docker info failed: is the Docker daemon running?"
[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (cargo build --release --bin berth, or set BERTH_BIN)"

PORT=$(free_port)
REG=127.0.0.1:$PORT
REG_URL=http://$REG
TAG=e2e-$PORT
BASE=berth-e2e/base:$TAG
IMAGE=berth-e2e/berth:$TAG
CONTAINER=berth-e2e-deploy-$PORT
VOLUME=berth-e2e-deploy-$PORT
ADMIN_PW=deploy-e2e-$RANDOM$RANDOM
REPO=e2e/deployed
IMG=$REG/$REPO
LOCAL=berth-e2e/busybox:deploy-$PORT
MSG="hello from the berth image $PORT"
on_exit "docker rmi -f $IMAGE $BASE $LOCAL $IMG:1"
on_exit "docker volume rm $VOLUME"
on_exit "docker rm -f $CONTAINER"
on_exit docker_logout_all

# A base image with what berth and the Dockerfile's RUN need, and nothing pulled.
make_base() {
	local root=$E2E_TMP/base lib applet
	mkdir -p "$root/bin" "$root/etc/ssl/certs" "$root/tmp"
	chmod 1777 "$root/tmp"
	for lib in $(ldd "$BERTH_BIN" | grep -o '/[^ ]*'); do
		cp --parents -L "$lib" "$root"
	done
	cp /bin/busybox "$root/bin/busybox"
	for applet in $("$root/bin/busybox" --list); do
		[[ -e $root/bin/$applet ]] || ln -s busybox "$root/bin/$applet"
	done
	cp -L /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
	echo 'root:x:0:0:root:/root:/bin/sh' >"$root/etc/passwd"
	echo 'root:x:0:' >"$root/etc/group"
	tar --numeric-owner -C "$root" -c . | tmo docker import - "$BASE"
}

# The documented build (docker build -f deploy/Dockerfile .) from the repository,
# whose .dockerignore sends only the binary; a BERTH_BIN elsewhere is staged in a
# context of the same layout.
build_image() { # BASE IMAGE
	local base=$1 image=$2 ctx=$E2E_ROOT bytes limit
	if [[ $(realpath "$BERTH_BIN") != "$(realpath -m "$E2E_ROOT/target/release/berth")" ]]; then
		ctx=$E2E_TMP/ctx
		mkdir -p "$ctx/target/release"
		cp "$BERTH_BIN" "$ctx/target/release/berth"
		cp "$E2E_ROOT/.dockerignore" "$ctx/"
	fi
	tmo docker build --build-arg "BASE=$base" -f "$E2E_ROOT/deploy/Dockerfile" -t "$image" "$ctx" \
		2>&1 | tee "$E2E_TMP/build.out"
	docker image inspect "$image" >/dev/null
	# "Sending build context to Docker daemon  39.85MB" (the classic builder's line):
	# the context is the binary, not the repository's target/ of several GB.
	bytes=$(sed -n 's/^Sending build context to Docker daemon *\([0-9.]*\)\([kMG]*B\).*/\1 \2/p' "$E2E_TMP/build.out" |
		awk '{ m = ($2 == "kB") ? 1e3 : ($2 == "MB") ? 1e6 : ($2 == "GB") ? 1e9 : 1; printf "%d", $1 * m }')
	limit=$(($(stat -c %s "$BERTH_BIN") + 1000000))
	if [[ -z $bytes ]]; then
		echo "this builder does not report the context's size: not checked"
		return 0
	fi
	echo "build context: $bytes bytes (binary + 1 MB: $limit)"
	((bytes <= limit))
}

image_config() {
	local got
	got=$(docker image inspect -f '{{.Config.User}} {{json .Config.Volumes}} {{json .Config.ExposedPorts}} {{json .Config.Entrypoint}} {{json .Config.Cmd}}' "$IMAGE")
	expect_eq "user volumes ports entrypoint cmd" \
		'berth {"/data":{}} {"5000/tcp":{}} ["/usr/local/bin/berth"] ["serve"]' "$got"
}

# As locked down as the Helm chart's securityContext: read-only root file system
# (berth writes only /data and /tmp), no capabilities, no privilege escalation.
start_container() {
	tmo docker run -d --name "$CONTAINER" -p "$REG:5000" -v "$VOLUME:/data" \
		--read-only --tmpfs /tmp --cap-drop ALL --security-opt no-new-privileges \
		-e BERTH_ADMIN_PASSWORD="$ADMIN_PW" "$IMAGE"
	wait_ready "$CONTAINER" "$REG_URL"
}

wait_ready() { # CONTAINER URL
	local container=$1 url=$2 i code
	for ((i = 0; i < 300; i++)); do # 300 x 0.1 s = 30 s at most
		if [[ $(docker inspect -f '{{.State.Running}}' "$container") != true ]]; then
			docker logs --tail 30 "$container"
			echo "the container exited during startup"
			return 1
		fi
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$url/readyz" || true)
		[[ $code == 200 ]] && break
		sleep 0.1
	done
	expect_eq "GET /readyz" 200 "$code"
	expect_eq "GET /healthz" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$url/healthz")"
}

runs_unprivileged() {
	expect_eq "uid of berth in the container" 10001 "$(docker exec "$CONTAINER" id -u)"
	expect_eq "owner of /data" 10001 "$(docker exec "$CONTAINER" stat -c %u /data)"
	docker exec "$CONTAINER" ls /data | tee "$E2E_TMP/data.ls"
	grep -q metadata.db "$E2E_TMP/data.ls"
}

auth_is_on() {
	expect_eq "anonymous GET /v2/" 401 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "$REG_URL/v2/")"
	expect_eq "admin's GET /v2/" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "admin:$ADMIN_PW" "$REG_URL/v2/")"
}

# The README's way to run admin commands against the running container.
cli_in_container() {
	printf 'alice-pw-%s\n' "$PORT" | docker exec -i "$CONTAINER" berth user add alice --password-stdin
	expect_eq "alice's GET /v2/" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 -u "alice:alice-pw-$PORT" "$REG_URL/v2/")"
}

login() {
	printf '%s\n' "$ADMIN_PW" | dockerc admin login -u admin --password-stdin "$REG"
}

push() {
	docker_build_busybox "$LOCAL" "$MSG" >"$E2E_TMP/image-id"
	docker tag "$LOCAL" "$IMG:1"
	dockerc admin push "$IMG:1" | tee "$E2E_TMP/push.out"
	grep -o 'digest: sha256:[0-9a-f]\{64\}' "$E2E_TMP/push.out" | cut -d' ' -f2 >"$E2E_TMP/digest"
	[[ -s $E2E_TMP/digest ]]
}

pull_and_run() {
	docker rmi "$IMG:1" "$LOCAL" >/dev/null
	refute docker image inspect "$IMG:1" >/dev/null 2>&1
	dockerc admin pull "$IMG:1" | tee "$E2E_TMP/pull.out"
	grep -q "Digest: $(cat "$E2E_TMP/digest")" "$E2E_TMP/pull.out"
	expect_eq "pulled image ID" "$(cat "$E2E_TMP/image-id")" "$(docker image inspect -f '{{.Id}}' "$IMG:1")"
	expect_eq "output of docker run" "$MSG" "$(docker run --rm --network none "$IMG:1")"
}

skopeo_inspect() {
	tmo skopeo inspect --tls-verify=false --creds "admin:$ADMIN_PW" "docker://$IMG:1" >"$E2E_TMP/inspect.json"
	expect_eq "digest skopeo sees" "$(cat "$E2E_TMP/digest")" "$(jq -r .Digest "$E2E_TMP/inspect.json")"
}

graceful_stop() {
	local t0=$SECONDS
	tmo docker stop -t 40 "$CONTAINER"
	echo "stopped in $((SECONDS - t0)) s"
	expect_eq "exit code after docker stop" 0 "$(docker inspect -f '{{.State.ExitCode}}' "$CONTAINER")"
	# Killed at the end of docker's grace period would be exit code 137, not 0.
	((SECONDS - t0 < 40))
}

# A new container (an upgrade, say) on the same volume: same accounts, same images.
replaced_container() {
	docker rm "$CONTAINER" >/dev/null
	start_container
	docker rmi "$IMG:1" >/dev/null
	dockerc admin pull "$IMG:1"
	expect_eq "output of docker run after the container was replaced" "$MSG" "$(docker run --rm --network none "$IMG:1")"
}

step "a local base image (docker import: berth's libraries, busybox, CA bundle)" make_base
step "docker build -f deploy/Dockerfile --build-arg BASE=(local base)" build_image "$BASE" "$IMAGE"
check "image: user berth, volume /data, port 5000, entrypoint berth serve" image_config
step "docker run the image (read-only, no capabilities): /readyz and /healthz answer 200" start_container
check "berth runs as uid 10001, owns /data, keeps metadata.db there" runs_unprivileged
check "authentication is on: anonymous /v2/ gets 401, the first admin 200" auth_is_on
check "docker exec CONTAINER berth user add: the new account logs in" cli_in_container
step "docker login as admin (BERTH_ADMIN_PASSWORD)" login
step "docker push $IMG:1" push
check "docker pull $IMG:1 and run it" pull_and_run
if command -v skopeo >/dev/null 2>&1; then
	check "skopeo inspect sees the pushed digest" skopeo_inspect
else
	skip "skopeo inspect: no skopeo here"
fi
check "docker stop: berth exits 0 within the grace period" graceful_stop
check "a new container on the same volume serves the image pushed before" replaced_container

# The Dockerfile's own path, as on debian:bookworm-slim: a Debian base without a CA
# bundle, which the build installs with apt (Debian's mirror is reachable here).
debian_image() {
	tmo docker import "$DEBIAN_ROOTFS_TAR" "$DEB_BASE"
	build_image "$DEB_BASE" "$DEB_IMAGE"
	grep -q 'Setting up ca-certificates' "$E2E_TMP/build.out"
	tmo docker run -d --name "$DEB_CONTAINER" -p "127.0.0.1:$DEB_PORT:5000" -e BERTH_AUTH__MODE=none "$DEB_IMAGE"
	wait_ready "$DEB_CONTAINER" "http://127.0.0.1:$DEB_PORT"
	expect_eq "uid of berth in the Debian-based container" 10001 "$(docker exec "$DEB_CONTAINER" id -u)"
	docker exec "$DEB_CONTAINER" test -s /etc/ssl/certs/ca-certificates.crt
	expect_eq "GET /v2/ (auth off)" 200 "$(curl -s -o /dev/null -w '%{http_code}' --max-time 5 "http://127.0.0.1:$DEB_PORT/v2/")"
}

DEB_PORT=$(free_port)
DEB_BASE=berth-e2e/debian-base:deploy-$DEB_PORT
DEB_IMAGE=berth-e2e/berth-debian:$TAG
DEB_CONTAINER=berth-e2e-deploy-debian-$DEB_PORT
on_exit "docker rmi -f $DEB_IMAGE $DEB_BASE"
on_exit "docker rm -f -v $DEB_CONTAINER"
if command -v debootstrap >/dev/null 2>&1; then
	check "Debian $DEBIAN_SUITE minbase rootfs (debootstrap, cached)" ensure_debian_rootfs
	if ((E2E_LAST_RC == 0)); then
		check "docker build on a Debian base (apt installs ca-certificates) and run it" debian_image
	fi
else
	skip "the image on a Debian base: no debootstrap here"
fi

if ((E2E_FAIL > 0)); then
	log "last lines of the container's log:"
	docker logs --tail 30 "$CONTAINER" 2>&1 | sed 's/^/    berth| /' >&2 || true
fi
e2e_finish
