#!/bin/sh
# Install Patchbay for the current user (no root): the app under ~/.local/opt/Patchbay, the
# `patchbay` command in ~/.local/bin, a menu entry and the icon. Run it again to upgrade;
# `./install.sh --uninstall` removes all of it (your config and usage ledger stay).
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
dest="$HOME/.local/opt/Patchbay"
bin="$HOME/.local/bin"
apps="$data/applications"
icon="$data/icons/hicolor/256x256/apps/patchbay.png"

if [ "${1:-}" = "--uninstall" ]; then
  rm -rf "$dest" "$bin/patchbay" "$apps/patchbay.desktop" "$icon" \
    "${XDG_CONFIG_HOME:-$HOME/.config}/autostart/patchbay.desktop"   # Settings > Start at login
  echo "Patchbay removed. Your settings and usage ledger are still in ~/.config/Patchbay and ~/.local/share/Patchbay."
  exit 0
fi

mkdir -p "$dest.new" "$bin" "$apps" "$(dirname "$icon")"
cp -R "$here/." "$dest.new/"
rm -rf "$dest" && mv "$dest.new" "$dest"
ln -sf "$dest/patchbay" "$bin/patchbay"
cp "$here/patchbay.png" "$icon"
sed "s|^Exec=patchbay|Exec=\"$dest/patchbay\"|" "$here/patchbay.desktop" > "$apps/patchbay.desktop"
command -v update-desktop-database >/dev/null 2>&1 && update-desktop-database "$apps" >/dev/null 2>&1 || true
echo "Patchbay installed in $dest. Start it from your applications menu, or run: $bin/patchbay"
