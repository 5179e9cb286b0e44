#!/usr/bin/env bash
# An OpenSSH server on 127.0.0.1 for the remote tests (CI and development; run as root).
# Its own host key, public-key authentication only, one test user. Idempotent: a server already
# running from this folder is reused. Prints the path of a JSON file for the tests:
#   export COSMOS_TEST_SSHD=$(bash scripts/ci/sshd.sh)
# {"host", "port", "user", "home", "client_key", "known_hosts", "host_key_pub", "sshd_config", "pid"}
set -euo pipefail

DIR=${COSMOS_SSHD_DIR:-/var/tmp/cosmos-sshd}
TEST_USER=${COSMOS_SSHD_USER:-cosmos-test}
INFO=$DIR/info.json

running() {
    [[ -f "$DIR/sshd.pid" && -f "$INFO" ]] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null
}

if running; then
    echo "$INFO"
    exit 0
fi

if [[ ! -x /usr/sbin/sshd ]]; then
    apt-get -o DPkg::Lock::Timeout=600 update -qq
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq openssh-server >/dev/null
fi

mkdir -p "$DIR" /run/sshd
chmod 755 "$DIR"
for key in host_ed25519 client_ed25519; do
    [[ -f "$DIR/$key" ]] || ssh-keygen -q -t ed25519 -N '' -C "cosmos-test-$key" -f "$DIR/$key"
done

if ! id -u "$TEST_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/bash "$TEST_USER"
fi
# '*': no password at all, yet not a locked account (sshd without PAM refuses locked accounts)
usermod -p '*' "$TEST_USER"
HOME_DIR=$(getent passwd "$TEST_USER" | cut -d: -f6)
install -d -m 700 -o "$TEST_USER" -g "$TEST_USER" "$HOME_DIR/.ssh"
install -m 600 -o "$TEST_USER" -g "$TEST_USER" "$DIR/client_ed25519.pub" "$HOME_DIR/.ssh/authorized_keys"

PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat >"$DIR/sshd_config" <<CONFIG
Port $PORT
ListenAddress 127.0.0.1
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin no
AllowUsers $TEST_USER
AuthorizedKeysFile .ssh/authorized_keys
ClientAliveInterval 15
MaxSessions 64
MaxStartups 64:30:128
Subsystem sftp internal-sftp
LogLevel VERBOSE
# the "GPU host" shares this machine's cores with the pytest-xdist workers: one OpenMP thread per
# process, as each worker's own processes get (tests/conftest.py), so torch's idle threads do not spin
SetEnv OMP_NUM_THREADS=1
CONFIG
/usr/sbin/sshd -t -f "$DIR/sshd_config"
rm -f "$DIR/sshd.pid"
/usr/sbin/sshd -f "$DIR/sshd_config" -E "$DIR/sshd.log"
for _ in $(seq 50); do
    [[ -s "$DIR/sshd.pid" ]] && break
    sleep 0.1
done
printf '[127.0.0.1]:%s %s\n' "$PORT" "$(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" >"$DIR/known_hosts"

python3 - "$DIR" "$PORT" "$TEST_USER" "$HOME_DIR" >"$INFO.tmp" <<'PY'
import json, sys
d, port, user, home = sys.argv[1:]
print(json.dumps({
    "host": "127.0.0.1", "port": int(port), "user": user, "home": home,
    "client_key": f"{d}/client_ed25519", "known_hosts": f"{d}/known_hosts",
    "host_key_pub": f"{d}/host_ed25519.pub", "sshd_config": f"{d}/sshd_config",
    "pid": int(open(f"{d}/sshd.pid").read()),
}, indent=2))
PY
mv "$INFO.tmp" "$INFO"
echo "$INFO"
