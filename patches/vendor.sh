#!/usr/bin/env bash
# Regenerates the vendored crates under patches/ from the published crate and its patch, or,
# with --check, fails when a committed tree is not exactly that.
#
#   bash patches/vendor.sh [--check] [NAME...]      (every patches/*.patch without a NAME)
#
# patches/NAME.patch says which crate it patches and what to leave out of the vendored copy
# in its first lines, then why, then the unified diff (`patch -p1`, which skips the prose):
#
#   Crate: fastwebsockets 0.10.0
#   Prune: examples tests benches ...
#
# The published crate comes from cargo's download cache when it is there, else from
# static.crates.io; either way its SHA-256 must be the one the crates.io index records.
# To change a patch: edit the vendored tree, then rewrite the diff part of NAME.patch with
#   bash patches/vendor.sh --diff NAME
set -euo pipefail
cd "$(dirname "$0")"

mode=write
case "${1:-}" in
    --check) mode=check; shift ;;
    --diff) mode=diff; shift ;;
esac
names=("$@")
if [ ${#names[@]} -eq 0 ]; then
    for p in *.patch; do names+=("${p%.patch}"); done
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The index path of a crate name on index.crates.io.
index_path() {
    local n="$1"
    case ${#n} in
        1) echo "1/$n" ;;
        2) echo "2/$n" ;;
        3) echo "3/${n:0:1}/$n" ;;
        *) echo "${n:0:2}/${n:2:2}/$n" ;;
    esac
}

# The published crate NAME VERSION, unpacked into $work/upstream/NAME and pruned.
published() {
    local name="$1" version="$2" prune="$3" crate="$work/$1-$2.crate"
    local cached
    cached="$(ls "${CARGO_HOME:-$HOME/.cargo}"/registry/cache/*/"$name-$version.crate" 2>/dev/null | head -1 || true)"
    if [ -n "$cached" ]; then
        cp "$cached" "$crate"
    else
        curl -sSfL "https://static.crates.io/crates/$name/$name-$version.crate" -o "$crate"
    fi
    local want got
    want="$(curl -sSfL "https://index.crates.io/$(index_path "$name")" |
        python3 -c 'import json,sys; v=sys.argv[1]; print(next(json.loads(l)["cksum"] for l in sys.stdin if json.loads(l)["vers"]==v))' "$version")"
    got="$(sha256sum "$crate" | cut -d' ' -f1)"
    if [ "$want" != "$got" ]; then
        echo "patches/vendor.sh: $name $version: checksum $got, the index says $want" >&2
        exit 1
    fi
    mkdir -p "$work/upstream"
    tar -xzf "$crate" -C "$work/upstream"
    mv "$work/upstream/$name-$version" "$work/upstream/$name"
    for p in $prune; do
        rm -rf "${work:?}/upstream/$name/$p"
    done
}

status=0
for name in "${names[@]}"; do
    patch_file="$name.patch"
    if [ ! -f "$patch_file" ]; then
        echo "patches/vendor.sh: no patches/$patch_file" >&2
        exit 2
    fi
    read -r _ crate version < <(grep -m1 '^Crate: ' "$patch_file")
    prune="$(grep -m1 '^Prune: ' "$patch_file" | cut -d' ' -f2- || true)"
    if [ "$crate" != "$name" ]; then
        echo "patches/vendor.sh: $patch_file patches $crate, not $name" >&2
        exit 2
    fi
    rm -rf "$work/upstream"
    published "$name" "$version" "$prune"
    case "$mode" in
        diff)
            # Keep the header (everything before the first `diff`), replace the diff.
            header="$(sed '/^diff /,$d' "$patch_file")"
            rm -rf "$work/d" && mkdir -p "$work/d"
            cp -a "$work/upstream/$name" "$work/d/a"
            cp -a "$name" "$work/d/b"
            {
                printf '%s\n' "$header"
                (cd "$work/d" && diff -ruN a b || true) |
                    sed -E 's/^(---|\+\+\+) ([^\t]*)\t.*/\1 \2/'
            } >"$work/$patch_file"
            mv "$work/$patch_file" "$patch_file"
            echo "patches/$patch_file rewritten against $name $version"
            ;;
        write | check)
            patch --batch --silent -p1 --reject-file=- --no-backup-if-mismatch -d "$work/upstream/$name" <"$patch_file"
            if [ "$mode" = write ]; then
                rm -rf "$name"
                cp -a "$work/upstream/$name" "$name"
                echo "patches/$name regenerated: $name $version + $patch_file"
            elif diff -r "$work/upstream/$name" "$name" >"$work/drift"; then
                echo "patches/$name = $name $version + $patch_file"
            else
                echo "patches/$name differs from $name $version + $patch_file:" >&2
                cat "$work/drift" >&2
                status=1
            fi
            ;;
    esac
done
exit $status
