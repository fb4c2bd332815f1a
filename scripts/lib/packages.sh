# Installs what scripts/packages.txt lists for the given groups, when missing.
# Usage (sourced): ensure_packages test package ...
# Debian packages with apt-get (as root, or through sudo), the pip requirements into the
# venv target/pyvenv, cargo subcommands with `cargo install --locked`.

packages_file="$(dirname "${BASH_SOURCE[0]}")/../packages.txt"

_present() { # program name or absolute path
  case $1 in
    -) return 1 ;;
    python3-m-venv)
      local d
      d=$(mktemp -d)
      python3 -m venv "$d/v" >/dev/null 2>&1
      local rc=$?
      rm -rf "$d"
      return $rc
      ;;
    /*) [ -e "$1" ] ;;
    *) command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/sbin/$1" ] ;;
  esac
}

# Prints "kind name check group" for each listed entry of the given groups.
packages_of() {
  local groups=" $* "
  grep -Ev '^\s*(#|$)' "$packages_file" | while read -r kind name check group _; do
    if [[ $groups == *" $group "* ]]; then
      echo "$kind $name $check $group"
    fi
  done
}

ensure_packages() {
  local sudo=
  [ "$(id -u)" -ne 0 ] && sudo=sudo
  local debs=() pips=() cargos=()
  local kind name check group
  while read -r kind name check group; do
    case $kind in
      deb) _present "$check" || debs+=("$name") ;;
      pip) pips+=("$name") ;;
      cargo) _present "$check" || cargo "${check#cargo-}" --version >/dev/null 2>&1 || cargos+=("$name") ;;
      *) echo "scripts/packages.txt: unknown kind '$kind' for $name" >&2; return 1 ;;
    esac
  done < <(packages_of "$@")
  if [ ${#debs[@]} -gt 0 ]; then
    echo "== installing Debian packages: ${debs[*]}"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${debs[@]}"
  fi
  if [ ${#pips[@]} -gt 0 ]; then
    local venv=target/pyvenv want
    for want in "${pips[@]}"; do
      # `python -m pip`, not bin/pip: a venv copied from another checkout keeps a pip
      # whose first line names the other checkout's python (and would install there).
      if ! "$venv/bin/python" -m pip show "${want%%[[=]*}" 2>/dev/null | grep -qx "Version: ${want##*==}"; then
        echo "== installing $want into $venv"
        [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
        "$venv/bin/python" -m pip install -q "$want"
      fi
    done
  fi
  local c
  for c in "${cargos[@]}"; do
    echo "== installing $c (cargo install --locked)"
    cargo install --locked "$c"
  done
}
