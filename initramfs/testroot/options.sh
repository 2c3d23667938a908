# Sourced by mkroot.sh and mkgrubdisk.sh: their one way to refuse bad
# usage (exit 2, the script's name, how to get help). Set $prog first.
die() {
    echo "$prog: error: $*" >&2
    echo "(run '$prog --help' for the options)" >&2
    exit 2
}

need_arg() {
    [ $# -ge 2 ] && [ -n "$2" ] || die "option $1 needs a value"
}
