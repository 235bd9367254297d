#!/usr/bin/env bash
# Vendor pinned front-end assets for the Yutang console (no CDN at run time).
#
# Usage:
#   bash scripts/vendor.sh            re-fetch every pinned package with `npm pack`,
#                                     extract the listed files, strip sourceMappingURL
#                                     comments, verify against SHA256SUMS, then install
#                                     them under yutang/console/static/vendor/.
#   bash scripts/vendor.sh --check    verify the committed files against SHA256SUMS
#                                     only (no network, no npm).
#   bash scripts/vendor.sh --update   like the default, but (re)write SHA256SUMS from
#                                     the fetched files instead of verifying; use it
#                                     only after deliberately bumping a version below,
#                                     then update README.md in the vendor directory.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENDOR="$ROOT/yutang/console/static/vendor"
SUMS="$VENDOR/SHA256SUMS"

# One line per vendored file:
#   <npm package>@<exact version>  <path inside the package tarball>  <path under vendor/>
MANIFEST='
htmx.org@2.0.11        dist/htmx.min.js                   htmx/htmx.min.js
htmx.org@2.0.11        LICENSE                            htmx/LICENSE
echarts@6.1.0          dist/echarts.min.js                echarts/echarts.min.js
echarts@6.1.0          LICENSE                            echarts/LICENSE
echarts@6.1.0          NOTICE                             echarts/NOTICE
echarts@6.1.0          licenses/LICENSE-d3                echarts/LICENSE-d3
bootstrap@5.3.9        dist/css/bootstrap.min.css         bootstrap/bootstrap.min.css
bootstrap@5.3.9        dist/js/bootstrap.bundle.min.js    bootstrap/bootstrap.bundle.min.js
bootstrap@5.3.9        LICENSE                            bootstrap/LICENSE
bootstrap-icons@1.13.2 font/bootstrap-icons.min.css       bootstrap-icons/bootstrap-icons.min.css
bootstrap-icons@1.13.2 font/fonts/bootstrap-icons.woff2   bootstrap-icons/fonts/bootstrap-icons.woff2
bootstrap-icons@1.13.2 font/fonts/bootstrap-icons.woff    bootstrap-icons/fonts/bootstrap-icons.woff
bootstrap-icons@1.13.2 LICENSE                            bootstrap-icons/LICENSE
'

die() { echo "vendor.sh: $*" >&2; exit 1; }

manifest_lines() { printf '%s\n' "$MANIFEST" | awk 'NF == 3'; }

# Remove sourceMappingURL comments so that ManifestStaticFilesStorage / whitenoise
# do not look for .map files that are not vendored. A line that holds only the
# comment is deleted; a comment trailing code on the same line is cut off.
strip_sourcemap() {
    local f="$1"
    case "$f" in
        *.js | *.css) ;;
        *) return 0 ;;
    esac
    sed -E -i \
        -e '/^[[:space:]]*\/\/[#@][[:space:]]*sourceMappingURL=[^[:space:]]*[[:space:]]*$/d' \
        -e '/^[[:space:]]*\/\*[#@][[:space:]]*sourceMappingURL=[^*]*\*\/[[:space:]]*$/d' \
        -e 's#/\*[#@][[:space:]]*sourceMappingURL=[^*]*\*/[[:space:]]*$##' \
        -e 's#//[#@][[:space:]]*sourceMappingURL=[^[:space:]]*[[:space:]]*$##' \
        "$f"
    if grep -q 'sourceMappingURL' "$f"; then
        die "sourceMappingURL still present in $f"
    fi
}

# Verify every file listed in SHA256SUMS inside directory $1, and that the set of
# files listed equals the set of files in the manifest.
verify_dir() {
    local dir="$1"
    [[ -f "$SUMS" ]] || die "missing $SUMS"
    local listed expected
    listed="$(awk '{ sub(/^\*/, "", $2); print $2 }' "$SUMS" | sort)"
    expected="$(manifest_lines | awk '{ print $3 }' | sort)"
    if [[ "$listed" != "$expected" ]]; then
        diff <(printf '%s\n' "$expected") <(printf '%s\n' "$listed") >&2 || true
        die "SHA256SUMS does not list exactly the manifest's files (< manifest, > SHA256SUMS)"
    fi
    (cd "$dir" && sha256sum --strict --quiet -c "$SUMS") || die "SHA-256 mismatch in $dir"
    local path
    while read -r path; do
        case "$path" in
            *.js | *.css)
                if grep -q 'sourceMappingURL' "$dir/$path"; then
                    die "$path contains a sourceMappingURL comment"
                fi
                ;;
        esac
    done <<<"$listed"
}

check() {
    verify_dir "$VENDOR"
    # Report stray files (everything but README.md and SHA256SUMS must be listed).
    local stray
    stray="$(cd "$VENDOR" && find . -type f ! -name README.md ! -name SHA256SUMS | sed 's#^\./##' | sort \
        | comm -23 - <(awk '{ sub(/^\*/, "", $2); print $2 }' "$SUMS" | sort))"
    [[ -z "$stray" ]] || die "files in vendor/ not listed in SHA256SUMS: $stray"
    echo "vendor.sh: OK, $(wc -l <"$SUMS") files match $SUMS"
}

fetch() {
    local mode="$1"
    command -v npm >/dev/null || die "npm not found"
    local tmp
    tmp="$(mktemp -d)"
    # shellcheck disable=SC2064
    trap "rm -rf '$tmp'" EXIT
    mkdir -p "$tmp/pack" "$tmp/out"

    local spec tarball
    for spec in $(manifest_lines | awk '{ print $1 }' | sort -u); do
        echo "vendor.sh: npm pack $spec"
        tarball="$(cd "$tmp/pack" && npm pack "$spec" --silent --ignore-scripts | tail -n 1)"
        [[ -f "$tmp/pack/$tarball" ]] || die "npm pack $spec produced no tarball"
        mkdir -p "$tmp/x/$spec"
        tar -xzf "$tmp/pack/$tarball" -C "$tmp/x/$spec"
        local got
        got="$(node -p 'require(process.argv[1]).version' "$tmp/x/$spec/package/package.json")"
        [[ "$got" == "${spec##*@}" ]] || die "$spec: tarball has version $got"
    done

    local src dest
    while read -r spec src dest; do
        [[ -f "$tmp/x/$spec/package/$src" ]] || die "$spec has no $src"
        mkdir -p "$(dirname "$tmp/out/$dest")"
        cp "$tmp/x/$spec/package/$src" "$tmp/out/$dest"
        strip_sourcemap "$tmp/out/$dest"
    done < <(manifest_lines)

    if [[ "$mode" == update ]]; then
        (cd "$tmp/out" && manifest_lines | awk '{ print $3 }' | sort | xargs sha256sum) >"$tmp/SHA256SUMS"
        mkdir -p "$VENDOR"
        cp "$tmp/SHA256SUMS" "$SUMS"
        echo "vendor.sh: wrote $SUMS"
    fi
    verify_dir "$tmp/out"

    # Install only after everything verified.
    while read -r spec src dest; do
        mkdir -p "$(dirname "$VENDOR/$dest")"
        cp "$tmp/out/$dest" "$VENDOR/$dest"
    done < <(manifest_lines)
    echo "vendor.sh: fetched and verified $(manifest_lines | wc -l) files into $VENDOR"
    check
}

case "${1:-}" in
    "") fetch verify ;;
    --check) check ;;
    --update) fetch update ;;
    -h | --help) sed -n '2,14p' "$0" ;;
    *) die "unknown argument: $1 (use --check, --update or no argument)" ;;
esac
