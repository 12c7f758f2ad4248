#!/bin/sh
# berth's initramfs: load the modules that reach the root disk, mount it read-only,
# hand over to the guest init on it. The first line tells berth the guest is booting.
export PATH=/bin
mount -t devtmpfs devtmpfs /dev
echo "berth-initramfs: booting"
mount -t proc proc /proc
mount -t sysfs sysfs /sys
for m in $(cat /lib/modules/order); do
  insmod "/lib/modules/$m.ko" || echo "berth-initramfs: insmod $m failed"
done
i=0
while [ ! -b /dev/vda ] && [ $i -lt 1000 ]; do sleep 0.01; i=$((i + 1)); done
if ! mount -t ext4 -o ro /dev/vda /newroot; then
  echo "berth-initramfs: cannot mount the root disk /dev/vda"
  cat /proc/partitions
  poweroff -f
fi
umount /proc /sys
mount --move /dev /newroot/dev
exec switch_root /newroot /usr/sbin/berth-init
