#!/usr/bin/env bash
# deploy/berth.service run by a real systemd: a Debian minbase rootfs (debootstrap'd
# once, cached) with systemd installed, booted in a container with /sbin/init. The
# unit, installed as its header says, must start berth under its sandbox (a dynamic
# user, no capabilities, no new privileges, a seccomp filter) with its state in
# /var/lib/berth; serve a docker login, push and pull from the host through a
# published port; keep what was pushed across `systemctl restart`; and stop cleanly
# on `systemctl stop` (exit status 0 after SIGTERM).
#
# The container needs CAP_SYS_ADMIN and no seccomp profile, so that systemd can set up
# the unit's namespaces; it writes only to its own cgroup subtree.
# e2e-timeout: 1200   (the first run debootstraps a Debian rootfs; later runs use the cache)
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
berth_only
require docker debootstrap
docker info >/dev/null 2>&1 || die "docker info failed: is the Docker daemon running?"
[[ -x $BERTH_BIN ]] || die "berth binary not found at $BERTH_BIN (cargo build --release --bin berth, or set BERTH_BIN)"

PORT=$(free_port)
REG=127.0.0.1:$PORT
REG_URL=http://$REG
BASE=berth-e2e/debian-base:systemd-$PORT
IMAGE=berth-e2e/systemd:$PORT
HOST=berth-e2e-systemd-$PORT
ADMIN_PW=systemd-e2e-$RANDOM$RANDOM
IMG=$REG/e2e/from-systemd
LOCAL=berth-e2e/busybox:systemd-$PORT
MSG="hello from berth under systemd $PORT"
on_exit "docker rmi -f $IMAGE $BASE $LOCAL $IMG:1"
on_exit "docker rm -f $HOST"
on_exit docker_logout_all

in_host() { tmo docker exec "$HOST" "$@"; }

systemd_image() {
	local ctx=$E2E_TMP/ctx
	mkdir -p "$ctx"
	tmo docker import "$DEBIAN_ROOTFS_TAR" "$BASE"
	cat >"$ctx/Dockerfile" <<-EOF
		FROM $BASE
		RUN apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
		    systemd systemd-sysv curl && rm -rf /var/lib/apt/lists/*
	EOF
	tmo docker build -q -t "$IMAGE" "$ctx"
}

boot() {
	local i state=
	tmo docker run -d --name "$HOST" --cap-add SYS_ADMIN --security-opt seccomp=unconfined \
		--security-opt apparmor=unconfined --tmpfs /run --tmpfs /run/lock \
		-v /sys/fs/cgroup:/sys/fs/cgroup:rw -p "$REG:5000" "$IMAGE" /sbin/init
	for ((i = 0; i < 60; i++)); do # 60 x 0.5 s = 30 s at most
		state=$(docker exec "$HOST" systemctl is-system-running 2>/dev/null || true)
		[[ $state == running || $state == degraded ]] && break
		sleep 0.5
	done
	echo "system state: $state"
	[[ $state == running || $state == degraded ]]
}

# The unit's header, step by step (the binary is copied in rather than installed).
install_unit() {
	docker cp "$BERTH_BIN" "$HOST:/usr/local/bin/berth"
	docker cp "$E2E_ROOT/deploy/berth.service" "$HOST:/etc/systemd/system/berth.service"
	in_host install -d /etc/berth
	in_host touch /etc/berth/berth.toml
	in_host install -m 600 /dev/null /etc/berth/berth.env
	printf 'BERTH_ADMIN_PASSWORD=%s\n' "$ADMIN_PW" | docker exec -i "$HOST" sh -c 'cat >/etc/berth/berth.env'
	in_host systemd-analyze verify /etc/systemd/system/berth.service
	in_host systemctl daemon-reload
	in_host systemctl enable --now berth
	wait_ready
}

wait_ready() {
	local i code=000
	for ((i = 0; i < 100; i++)); do # 100 x 0.2 s = 20 s at most
		code=$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$REG_URL/readyz" || true)
		[[ $code == 200 ]] && break
		sleep 0.2
	done
	[[ $code == 200 ]] || in_host journalctl -u berth --no-pager -n 30
	expect_eq "GET /readyz" 200 "$code"
	expect_eq "systemctl is-active berth" active "$(in_host systemctl is-active berth)"
}

# What the kernel says about the running berth process.
sandboxed() {
	local pid status
	pid=$(in_host systemctl show -p MainPID --value berth)
	status=$(in_host cat "/proc/$pid/status")
	printf '%s\n' "$status" | grep -E '^(Uid|NoNewPrivs|Seccomp|CapEff):'
	local uid
	uid=$(printf '%s\n' "$status" | awk '/^Uid:/ { print $2 }')
	((uid != 0))
	printf '%s\n' "$status" | grep -q '^NoNewPrivs:[[:space:]]*1$'
	printf '%s\n' "$status" | grep -q '^Seccomp:[[:space:]]*2$'
	printf '%s\n' "$status" | grep -q '^CapEff:[[:space:]]*0000000000000000$'
	expect_eq "owner of /var/lib/private/berth" "$uid" "$(in_host stat -c %u /var/lib/private/berth)"
	in_host test -s /var/lib/private/berth/metadata.db
}

push_pull() {
	printf '%s\n' "$ADMIN_PW" | dockerc admin login -u admin --password-stdin "$REG"
	docker_build_busybox "$LOCAL" "$MSG" >/dev/null
	docker tag "$LOCAL" "$IMG:1"
	dockerc admin push "$IMG:1"
	docker rmi "$IMG:1" "$LOCAL" >/dev/null
	dockerc admin pull "$IMG:1"
	expect_eq "output of docker run" "$MSG" "$(docker run --rm --network none "$IMG:1")"
}

restart_keeps_data() {
	in_host systemctl restart berth
	wait_ready
	docker rmi "$IMG:1" >/dev/null
	dockerc admin pull "$IMG:1"
	expect_eq "output of docker run after a restart" "$MSG" "$(docker run --rm --network none "$IMG:1")"
}

clean_stop() {
	in_host systemctl stop berth
	expect_eq "Result after systemctl stop" Result=success "$(in_host systemctl show -p Result berth)"
	expect_eq "exit status after SIGTERM" ExecMainStatus=0 "$(in_host systemctl show -p ExecMainStatus berth)"
}

step "Debian $DEBIAN_SUITE minbase rootfs (debootstrap, cached)" ensure_debian_rootfs
step "an image with systemd (apt, from the Debian mirror)" systemd_image
step "boot it: systemd is running" boot
step "install deploy/berth.service as its header says; it starts and is ready" install_unit
check "berth runs as a dynamic user: no capabilities, no new privileges, seccomp" sandboxed
check "docker login, push and pull through the unit's berth" push_pull
check "systemctl restart keeps accounts and images (StateDirectory)" restart_keeps_data
check "systemctl stop: berth exits 0 after SIGTERM" clean_stop

if ((E2E_FAIL > 0)); then
	log "last lines of berth's journal:"
	docker exec "$HOST" journalctl -u berth --no-pager -n 30 2>&1 | sed 's/^/    berth| /' >&2 || true
fi
e2e_finish
