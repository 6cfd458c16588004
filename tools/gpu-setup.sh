# Sourced by gpu-check.sh and gpu-train.sh from inside the folder gpu-pack.sh filled (DIR): unpacks
# the .xz files, and makes the Vulkan loader and a GPU driver findable (NVIDIA's Vulkan driver
# needs libglvnd, which Debian's packages in the folder bring where the machine lacks them).
for packed in *.xz pkg/*.xz; do
  [ -e "$packed" ] || continue
  [ -e "${packed%.xz}" ] || xz -dkT0 "$packed"
done
chmod +x emerge emerge-* node 2>/dev/null
export XDG_RUNTIME_DIR=${XDG_RUNTIME_DIR:-/tmp}
# The Vulkan loader and the GL dispatch libraries NVIDIA's Vulkan driver needs (libglvnd), from
# Debian's packages, where the machine lacks them: on an NVIDIA machine, as root, into / (the
# driver finds them only through the linker cache), else into a private folder searched after
# the machine's own.
if ls ./*.deb >/dev/null 2>&1 && ! ldconfig -p 2>/dev/null | grep 'libGLdispatch.so.0' >/dev/null; then
  if [ "$(id -u)" = 0 ] && [ -e /dev/nvidiactl ]; then
    for deb in ./*.deb; do dpkg-deb -x "$deb" /; done
    ldconfig
  else
    rm -rf loader && mkdir loader
    for deb in ./*.deb; do dpkg-deb -x "$deb" loader; done
    export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}$DIR/loader/usr/lib/x86_64-linux-gnu
  fi
fi
[ -d /usr/local/nvidia/lib64 ] && export LD_LIBRARY_PATH=${LD_LIBRARY_PATH:+$LD_LIBRARY_PATH:}/usr/local/nvidia/lib64
if [ -z "${VK_ICD_FILENAMES:-}${VK_DRIVER_FILES:-}" ]; then
  for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/share/vulkan/icd.d/nvidia_icd.json \
    /etc/vulkan/icd.d/nvidia_icd.json; do
    if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; break; fi
  done
fi

