#!/usr/bin/env bash
# Install the Debian packages the tests, benchmarks and demo use: real SIP
# peers (sipp; Kamailio for bench/ and as the edge proxy of the UA tests;
# baresip and linphone-daemon as real phones), Prometheus, shellcheck (used by
# actionlint), and the real local node's runtime pieces. Skips apt when all are present.
set -euo pipefail
need=()
command -v sipp >/dev/null || need+=(sip-tester)
command -v kamailio >/dev/null || need+=(kamailio)
command -v prometheus >/dev/null || need+=(prometheus)
command -v shellcheck >/dev/null || need+=(shellcheck)
# Real SIP phones for tests/integration/ua: baresip and liblinphone's linphone-daemon.
command -v baresip >/dev/null || need+=(baresip)
command -v linphone-daemon >/dev/null || need+=(linphone-cli)
# Node.js runs JsSIP, the browser SIP library, as a WebSocket member (tests/integration/jssip).
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
# The real local node (devcluster/README.md): runc and the CNI plugins under
# containerd, nft for its guard rails and kube-proxy, mmdebstrap for images.
command -v runc >/dev/null || need+=(runc)
[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/portmap ]] || need+=(containernetworking-plugins)
command -v nft >/dev/null || need+=(nftables)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
# A C compiler and the Python headers: scripts/build_mypyc.py compiles the SIP core
# with them (without them sip-node runs its pure Python core, slower).
command -v gcc >/dev/null || need+=(gcc)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(sysconfig.get_paths()["include"] + "/Python.h"))' 2>/dev/null || need+=(python3-dev)
[[ ${#need[@]} -eq 0 ]] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "install-system-deps: missing ${need[*]} and no apt-get here; install them with your package manager" >&2
  exit 1
fi
sudo=""
[[ $(id -u) -eq 0 ]] || sudo="sudo"
echo "installing ${need[*]} with apt-get"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
