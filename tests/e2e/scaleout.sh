#!/usr/bin/env bash
# e2e-timeout: 900
# Scale-out: three berth replicas on one PostgreSQL and one Garage (S3), behind nginx
# (round-robin, no stickiness), all on loopback, all real servers started here.
#  1. berth's conformance suite through the load balancer;
#  2. a chunked upload whose POST, PATCHes and PUT go to three different replicas;
#  3. kill -9 of one replica during 16 concurrent pushes: every push answered 201
#     pulls back intact through the survivors, and pushes retried by their clients
#     finish;
#  4. with accounts on (token auth): docker login, push and pull, skopeo and podman,
#     through the load balancer, so a token one replica signed is honoured by others.
# shellcheck disable=SC2317  # (functions run indirectly, through check/step)
set -euo pipefail
# shellcheck source=tests/e2e/lib.sh
. "$(dirname "$0")/lib.sh"

e2e_init
berth_only
require curl jq nginx skopeo podman docker runuser
PGBIN=$(find /usr/lib/postgresql -maxdepth 2 -name bin -type d | sort -V | tail -n 1)
[[ -x $PGBIN/initdb ]] || die "PostgreSQL is not installed (run scripts/install-deps)"
GARAGE=${GARAGE:-$HOME/.cargo/bin/garage}
[[ -x $GARAGE ]] || die "garage is not installed at $GARAGE (run scripts/install-deps)"

ADMIN_PW="admin-pw-scaleout-1"
GK=GK0123456789abcdef01234567
GS=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

start_postgres() {
	PG_DIR=$E2E_TMP/pg
	PG_PORT=$(free_port)
	mkdir -p "$PG_DIR"
	chown postgres:postgres "$PG_DIR"
	chmod 755 "$E2E_TMP"
	runuser -u postgres -- "$PGBIN/initdb" -D "$PG_DIR/data" -U berth --auth=trust --no-sync >"$PG_DIR/initdb.log"
	runuser -u postgres -- "$PGBIN/pg_ctl" -D "$PG_DIR/data" -l "$PG_DIR/log" -w -t 60 \
		-o "-p $PG_PORT -k $PG_DIR -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off" start >/dev/null
	on_exit "runuser -u postgres -- $PGBIN/pg_ctl -D $PG_DIR/data stop -m immediate"
	psql -q -h 127.0.0.1 -p "$PG_PORT" -U berth -d postgres -c "CREATE DATABASE berth"
	log "PostgreSQL on 127.0.0.1:$PG_PORT"
}

start_garage() {
	local dir=$E2E_TMP/garage rpc admin i
	mkdir -p "$dir"
	S3_PORT=$(free_port)
	rpc=$(free_port)
	admin=$(free_port)
	cat >"$dir/garage.toml" <<-EOF
		metadata_dir = "$dir/meta"
		data_dir = "$dir/data"
		db_engine = "sqlite"
		replication_factor = 1
		rpc_bind_addr = "127.0.0.1:$rpc"
		rpc_public_addr = "127.0.0.1:$rpc"
		rpc_secret = "$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')"
		[s3_api]
		s3_region = "garage"
		api_bind_addr = "127.0.0.1:$S3_PORT"
		root_domain = ".s3.garage.localhost"
		[admin]
		api_bind_addr = "127.0.0.1:$admin"
		admin_token = "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
	EOF
	GARAGE_DEFAULT_ACCESS_KEY=$GK GARAGE_DEFAULT_SECRET_KEY=$GS GARAGE_DEFAULT_BUCKET=berth \
		"$GARAGE" -c "$dir/garage.toml" server --single-node --default-bucket >"$dir/log" 2>&1 &
	GARAGE_PID=$!
	on_exit "kill $GARAGE_PID"
	for ((i = 0; i < 300; i++)); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/health") == 200 ]] && break
		sleep 0.1
	done
	[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$admin/health") == 200 ]] || die "garage did not start: $(tail -n 20 "$dir/log")"
	log "Garage S3 on 127.0.0.1:$S3_PORT"
}

# replica_start N [AUTH_MODE]: berth replica N (1..3) on its own port and data dir.
REPLICA_PIDS=()
REPLICA_PORTS=()
replica_start() {
	local n=$1 mode=${2:-none} port=${REPLICA_PORTS[$1]:-$(free_port)} i
	REPLICA_PORTS[n]=$port
	mkdir -p "$E2E_TMP/replica$n"
	env -u BERTH_BIN BERTH_AUTH__MODE="$mode" BERTH_ADMIN_PASSWORD=$ADMIN_PW \
		BERTH_METADATA__URL="postgres://berth@127.0.0.1:$PG_PORT/berth" \
		BERTH_STORAGE__KIND=s3 BERTH_STORAGE__S3__ENDPOINT="http://127.0.0.1:$S3_PORT" \
		BERTH_STORAGE__S3__BUCKET=berth BERTH_STORAGE__S3__REGION=garage \
		BERTH_STORAGE__S3__ACCESS_KEY_ID=$GK BERTH_STORAGE__S3__SECRET_ACCESS_KEY=$GS \
		BERTH_STORAGE__S3__ALLOW_HTTP=true BERTH_STORAGE__S3__PATH_STYLE=true \
		"$BERTH_BIN" serve --listen "127.0.0.1:$port" --data-dir "$E2E_TMP/replica$n" \
		>>"$E2E_TMP/replica$n.log" 2>&1 &
	REPLICA_PIDS[n]=$!
	for ((i = 0; i < 300; i++)); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/readyz") == 200 ]] && return 0
		kill -0 "${REPLICA_PIDS[n]}" 2>/dev/null || die "replica $n exited: $(tail -n 20 "$E2E_TMP/replica$n.log")"
		sleep 0.1
	done
	die "replica $n not ready: $(tail -n 20 "$E2E_TMP/replica$n.log")"
}
replica_stop() { # N [SIGNAL]
	kill "-${2:-TERM}" "${REPLICA_PIDS[$1]}" 2>/dev/null || true
	wait "${REPLICA_PIDS[$1]}" 2>/dev/null || true
}
stop_all() {
	local n
	for n in 1 2 3; do [[ -z ${REPLICA_PIDS[n]:-} ]] || replica_stop "$n"; done
}
on_exit stop_all

start_nginx() {
	local dir=$E2E_TMP/nginx n
	mkdir -p "$dir"
	LB_PORT=$(free_port)
	{
		echo "worker_processes 1; pid $dir/nginx.pid; error_log $dir/error.log warn; daemon off;"
		echo "events { worker_connections 1024; }"
		echo "http {"
		echo "  access_log $dir/access.log;"
		echo "  upstream berth {"
		for n in 1 2 3; do echo "    server 127.0.0.1:${REPLICA_PORTS[n]} max_fails=1 fail_timeout=5s;"; done
		echo "  }"
		echo "  server {"
		echo "    listen 127.0.0.1:$LB_PORT;"
		echo "    client_max_body_size 0; proxy_request_buffering off; proxy_buffering off;"
		echo "    proxy_http_version 1.1; proxy_set_header Connection \"\";"
		echo "    proxy_set_header Host \$http_host; proxy_set_header X-Forwarded-For \$remote_addr;"
		echo "    proxy_set_header X-Forwarded-Proto \$scheme;"
		echo "    client_body_temp_path $dir; proxy_temp_path $dir;"
		echo "    location / { proxy_pass http://berth; }"
		echo "  }"
		echo "}"
	} >"$dir/nginx.conf"
	nginx -c "$dir/nginx.conf" -p "$dir" &
	LB_PID=$!
	on_exit "kill $LB_PID"
	REG_PORT=$LB_PORT
	REG=127.0.0.1:$LB_PORT
	REG_URL=http://$REG
	local i
	for ((i = 0; i < 100; i++)); do
		[[ $(curl -s -o /dev/null -w '%{http_code}' "$REG_URL/v2/") =~ ^(200|401)$ ]] && break
		sleep 0.1
	done
	log "nginx on $REG_URL in front of ports ${REPLICA_PORTS[*]}"
}

start_postgres
start_garage
for n in 1 2 3; do replica_start "$n"; done
start_nginx

conformance() {
	cd "$E2E_ROOT"
	CONFORMANCE_URL=$REG_URL tmo cargo test -q -p berth-conformance 2>&1 | tail -n 30
}
check "the conformance suite through the load balancer" conformance

across_replicas() {
	local f=$E2E_TMP/chunked.bin r=$E2E_TMP/ch code loc digest
	head -c $((11 * 1024 * 1024 + 123)) /dev/urandom >"$f"
	digest=$(sha_of "$f")
	split -b $((6 * 1024 * 1024)) -d -a 1 "$f" "$f.part."
	code=$(http_req POST "http://127.0.0.1:${REPLICA_PORTS[1]}/v2/e2e/chunked/blobs/uploads/" "$r" --data-binary '')
	expect_eq "POST on replica 1" 202 "$code"
	loc=$(hdr Location "$r.hdr")
	loc=${loc#http://*/}
	code=$(http_req PATCH "http://127.0.0.1:${REPLICA_PORTS[2]}/${loc#/}" "$r" \
		-H 'Content-Type: application/octet-stream' -H "Content-Range: 0-$((6 * 1024 * 1024 - 1))" --data-binary @"$f.part.0")
	expect_eq "first PATCH on replica 2" 202 "$code"
	loc=$(hdr Location "$r.hdr")
	loc=${loc#http://*/}
	code=$(http_req PATCH "http://127.0.0.1:${REPLICA_PORTS[3]}/${loc#/}" "$r" \
		-H 'Content-Type: application/octet-stream' --data-binary @"$f.part.1")
	expect_eq "second PATCH on replica 3" 202 "$code"
	expect_eq "Range after both PATCHes" "0-$(($(stat -c %s "$f") - 1))" "$(hdr Range "$r.hdr")"
	loc=$(hdr Location "$r.hdr")
	loc=${loc#http://*/}
	code=$(http_req PUT "$(with_query "http://127.0.0.1:${REPLICA_PORTS[1]}/${loc#/}" "digest=$digest")" "$r" --data-binary '')
	expect_eq "PUT on replica 1" 201 "$code"
	for n in 1 2 3; do
		REG_URL=http://127.0.0.1:${REPLICA_PORTS[n]} verify_blob e2e/chunked "$digest" "$(stat -c %s "$f")"
	done
}
check "a chunked upload across three replicas, read back on each" across_replicas

# push_until_done DIR REPO: a client that retries: the whole push again, up to 6 times.
push_until_done() {
	local dir=$1 repo=$2 try
	for ((try = 1; try <= 6; try++)); do
		rm -f "$dir/status"
		push_random_image "$dir" "$repo" v1 $((512 * 1024)) 2M
		grep -q '^manifest 201' "$dir/status" && {
			echo "$try" >"$dir/tries"
			return 0
		}
		sleep 1
	done
	echo failed >"$dir/tries"
}

kill_during_pushes() {
	local i pids=() done=0 retried=0
	for ((i = 0; i < 16; i++)); do
		make_random_image "$E2E_TMP/img$i" "scaleout-$i" $((2 * 1024 * 1024)) $((1024 * 1024))
		push_until_done "$E2E_TMP/img$i" "e2e/kill-$i" &
		pids+=($!)
	done
	sleep 1.5
	replica_stop 2 KILL
	echo "replica 2 killed -9 while 16 pushes ran"
	wait "${pids[@]}"
	for ((i = 0; i < 16; i++)); do
		[[ $(cat "$E2E_TMP/img$i/tries") != failed ]] || {
			echo "push $i did not finish in 6 tries: $(tail -n 5 "$E2E_TMP/img$i/push.log")"
			return 1
		}
		[[ $(cat "$E2E_TMP/img$i/tries") == 1 ]] || retried=$((retried + 1))
		verify_tree "e2e/kill-$i" v1 >/dev/null
		done=$((done + 1))
	done
	echo "$done pushes pulled back intact through the survivors; $retried needed a retry"
}
check "kill -9 of a replica during 16 concurrent pushes" kill_during_pushes

# Accounts on: every replica restarts with token auth, on the same database.
for n in 1 2 3; do
	[[ $n == 2 ]] || replica_stop "$n"
	replica_start "$n" token
done

clients() {
	local img=berth-e2e/scaleout:1 id
	printf '%s' "$ADMIN_PW" | dockerc admin login -u admin --password-stdin "$REG"
	on_exit docker_logout_all
	id=$(docker_build_busybox "$img" "hello scale-out")
	on_exit "docker rmi -f $img $REG/lib/scaleout:1"
	docker tag "$img" "$REG/lib/scaleout:1"
	dockerc admin push "$REG/lib/scaleout:1"
	docker rmi "$REG/lib/scaleout:1" >/dev/null
	dockerc admin pull "$REG/lib/scaleout:1"
	expect_eq "pulled image" "$id" "$(docker image inspect -f '{{.Id}}' "$REG/lib/scaleout:1")"
	tmo skopeo copy --src-tls-verify=false --dest-tls-verify=false --src-creds "admin:$ADMIN_PW" \
		--dest-creds "admin:$ADMIN_PW" "docker://$REG/lib/scaleout:1" "docker://$REG/lib/scaleout:copied"
	tmo podman pull --tls-verify=false --creds "admin:$ADMIN_PW" "$REG/lib/scaleout:copied"
	on_exit "podman rmi -f $REG/lib/scaleout:copied"
	tmo podman push --tls-verify=false --creds "admin:$ADMIN_PW" "$REG/lib/scaleout:copied" "$REG/lib/scaleout:podman"
	as_user admin "$ADMIN_PW" verify_tree lib/scaleout podman
}
check "docker, skopeo and podman through the load balancer, accounts on" clients

e2e_finish
