#!/bin/sh
# berth's guest init (PID 1; no systemd): mounts, modules, the tap network, shared
# host directories, containerd, then dockerd. Listens for berth's "poweroff" and shuts
# down cleanly: dockerd stops its containers, the data disk is unmounted, the VM powers
# off. Settings come from the kernel command line (berth.*).
#
# Under TCG every process start is expensive, so what can overlap does: containerd
# starts as soon as the data disk is mounted, the netfilter modules load while it and
# dockerd start, and modules are insmod'ed in an order computed when the image was built.
export PATH=/usr/sbin:/usr/bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mkdir -p /dev/pts /dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /dev/shm
mount -t tmpfs -o mode=755 tmpfs /run
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "berth-init: started ($(cut -d' ' -f1 /proc/uptime) s since boot)"

MODULES=/lib/modules/$(uname -r)
load() {
  while read -r m; do
    insmod "$MODULES/$m" 2>/dev/null
  done < "$MODULES/$1"
}

mount -t ext4 /dev/vdb /var/lib/docker || echo "berth-init: cannot mount the data disk /dev/vdb"
mkdir -p /var/lib/docker/.berth/etc-docker /run/docker/containerd
mount --bind /var/lib/docker/.berth/etc-docker /etc/docker

# containerd, restarted if it dies (as dockerd restarts the containerd it starts itself).
(
  while [ ! -e /run/berth-stopping ]; do
    containerd --config /etc/containerd/berth.toml &
    echo $! > /run/containerd.pid
    wait $!
    [ -e /run/berth-stopping ] || { echo "berth-init: containerd exited, restarting"; sleep 1; }
  done
) &

load berth-boot-modules
load berth-docker-modules &
sysctl -q -w net.ipv4.ip_forward=1

setting() { tr ' ' '\n' < /proc/cmdline | sed -n "s/^berth\.$1=//p"; }
ADDR=$(setting addr)
GATEWAY=$(setting gw)
PORT=$(setting port)
CONTROL=$(setting control)
ip link set lo up
ip addr add "$ADDR" dev eth0
ip link set eth0 up
ip route add default via "$GATEWAY"

for share in $(setting share); do
  tag=${share%%,*}
  dir=${share#*,}
  mkdir -p "$dir"
  mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,access=client "$tag" "$dir" \
    || echo "berth-init: cannot mount share $dir"
done

# --tls=false: dockerd otherwise sleeps 15 s at start to warn about a TCP listener
# without TLS (this one is reachable from the namespace berth owns only).
dockerd --tls=false --containerd /var/run/docker/containerd/containerd.sock \
  --host "tcp://${ADDR%/*}:$PORT" --host unix:///run/docker.sock &
DOCKERD=$!
echo "berth-init: dockerd started (pid $DOCKERD, $(cut -d' ' -f1 /proc/uptime) s since boot)"

# The API and control ports are for berth on the tap side only, not for containers.
for p in "$PORT" "$CONTROL"; do
  iptables -I INPUT -p tcp --dport "$p" ! -i eth0 -j DROP
done

shutdown() {
  echo "berth-init: $1: stopping dockerd"
  touch /run/berth-stopping
  kill -TERM "$DOCKERD" 2>/dev/null
  i=0
  while kill -0 "$DOCKERD" 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i + 1)); done
  CONTAINERD=$(cat /run/containerd.pid 2>/dev/null)
  kill -TERM "$CONTAINERD" 2>/dev/null
  i=0
  while kill -0 "$CONTAINERD" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
  sync
  umount /etc/docker
  umount /var/lib/docker || mount -o remount,ro /var/lib/docker
  sync
  echo "berth-init: powering off"
  poweroff -f
}

# berth connects to the control port and sends "poweroff".
(
  while true; do
    if [ "$(nc -l -p "$CONTROL" < /dev/null | head -n 1)" = poweroff ]; then
      kill -USR1 1
      break
    fi
  done
) &
trap 'shutdown "poweroff requested"' USR1
while kill -0 "$DOCKERD" 2>/dev/null; do
  wait "$DOCKERD"
done
shutdown "dockerd exited"
