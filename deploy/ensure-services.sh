#!/usr/bin/env bash
# Makes sure PostgreSQL, Redis and RabbitMQ answer on 127.0.0.1 for the test suite.
# Starts them if they are installed but stopped; installs them with apt (as root) if missing.
set -euo pipefail

up() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {
  local port=$1 name=$2
  for _ in $(seq 1 120); do
    if up "$port"; then return 0; fi
    sleep 1
  done
  echo "ensure-services: $name did not come up on port $port" >&2
  return 1
}

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

need_install=()
up 5432 || command -v pg_ctlcluster >/dev/null || need_install+=(postgresql postgresql-client)
up 6379 || command -v redis-server >/dev/null || need_install+=(redis-server)
up 5672 || command -v rabbitmq-server >/dev/null || need_install+=(rabbitmq-server)
if [ ${#need_install[@]} -gt 0 ]; then
  echo "ensure-services: installing ${need_install[*]}"
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_install[@]}" >/dev/null
fi

if ! up 5432; then
  echo "ensure-services: starting PostgreSQL"
  ver=$(ls /etc/postgresql | sort -V | tail -1)
  sudo_ pg_ctlcluster --skip-systemctl-redirect "$ver" main start
  wait_port 5432 PostgreSQL
  hba=/etc/postgresql/$ver/main/pg_hba.conf
  # Tests connect as postgres over TCP without a password (local development only).
  if ! grep -q "minyi-test" "$hba" 2>/dev/null; then
    sudo_ sed -i '1i host all all 127.0.0.1/32 trust # minyi-test' "$hba"
    sudo_ pg_ctlcluster --skip-systemctl-redirect "$ver" main reload
  fi
fi
if ! psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" -Atc "SELECT 1 FROM pg_database WHERE datname='test'" 2>/dev/null | grep -q 1; then
  psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" -qc "CREATE DATABASE test" 2>/dev/null || true
fi

if ! up 6379; then
  echo "ensure-services: starting Redis"
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no
  wait_port 6379 Redis
fi

if ! up 5672; then
  echo "ensure-services: starting RabbitMQ"
  sudo_ rabbitmq-server -detached
  wait_port 5672 RabbitMQ
fi
# The port opens before the broker accepts AMQP; give it a moment to finish booting.
for _ in $(seq 1 30); do
  if rabbitmqctl -q status >/dev/null 2>&1 || ! command -v rabbitmqctl >/dev/null; then break; fi
  sleep 1
done
echo "ensure-services: PostgreSQL, Redis and RabbitMQ are up"
