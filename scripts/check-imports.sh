#!/usr/bin/env bash
# Fails when the modules of a crate's library import each other in a circle.
#
#   scripts/check-imports.sh [SRC_DIR]      (default: chi-runtime/src)
#
# Every `.rs` file of the library (not `main.rs`, not `bin/`) is one module:
# `lib.rs` is `crate`, `a.rs` and `a/mod.rs` are `a`, `a/b.rs` is `a::b`;
# modules declared inline (`mod tests { … }`) belong to their file. An import
# is a path that names another file's module:
#
# * `crate::…`, `super::…`, `self::…` anywhere in the code, and in `use` trees
#   (`use crate::{a::X, b::{Y, Z}}` imports `a` and `b`);
# * a path that starts with a child module of the file (`pub use stats::X`,
#   `footprint::LIMIT`).
#
# A path names the longest module it spells (`crate::worker::stats::X` is
# `worker::stats`; `crate::worker::X` is `worker`, even when `worker` only
# re-exports `X`: that re-export is an import of its own). `mod child;` is
# not an import, so a child may use its parent as long as the parent names
# nothing of the child. Comments (doc links too) and string literals are
# skipped. Calling a method defined in another file's `impl` block is not a
# path, so it is not seen.
#
# With no circle it prints every module with what it imports, in layers (a
# module's layer is one above the highest module it imports) and exits 0. Otherwise it
# prints one circle, each step with the file and line of the path that makes
# it, and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
src="${1:-chi-runtime/src}"
src="${src%/}"
if [ ! -f "$src/lib.rs" ]; then
  echo "check-imports: no lib.rs in $src" >&2
  exit 2
fi
files=()
while IFS= read -r f; do
  files+=("$f")
done < <(find "$src" -name '*.rs' ! -path "$src/bin/*" ! -path "$src/main.rs" | LC_ALL=C sort)

prog=$(cat <<'AWK'
# ---- reading: comments and literals blanked, line by line ----------------------
function identchar(c) { return c ~ /[A-Za-z0-9_]/ }

# `line` without comments and string/char literals; the state (inside a block
# comment, a string, a raw string) carries over to the next line.
function clean(line,   out, i, n, c, d, j, h, endq) {
  out = ""; n = length(line); i = 1
  while (i <= n) {
    c = substr(line, i, 1); d = substr(line, i + 1, 1)
    if (blk > 0) {
      if (c == "/" && d == "*") { blk++; i += 2; continue }
      if (c == "*" && d == "/") { blk--; i += 2; continue }
      i++; continue
    }
    if (instr) {
      if (c == "\\") { i += 2; continue }
      if (c == "\"") { instr = 0 }
      i++; continue
    }
    if (inraw >= 0) {
      endq = "\""; for (h = 0; h < inraw; h++) endq = endq "#"
      if (substr(line, i, length(endq)) == endq) { i += length(endq); inraw = -1; continue }
      i++; continue
    }
    if (c == "/" && d == "/") break
    if (c == "/" && d == "*") { blk = 1; i += 2; continue }
    if (c == "\"") { instr = 1; out = out "\"\""; i++; continue }
    if ((c == "r" || (c == "b" && d == "r")) && !identchar(prev1)) {
      j = i + 1; if (c == "b") j++
      h = 0; while (substr(line, j, 1) == "#") { h++; j++ }
      if (substr(line, j, 1) == "\"" && (h > 0 || j == i + 1 || (c == "b" && j == i + 2))) {
        inraw = h; out = out "\"\""; i = j + 1; prev1 = "\""; continue
      }
    }
    if (c == "'") {
      if (d == "\\") {
        j = i + 3; while (j <= n && substr(line, j, 1) != "'") j++
        out = out "' '"; i = j + 1; prev1 = "'"; continue
      }
      if (substr(line, i + 2, 1) == "'") { out = out "' '"; i += 3; prev1 = "'"; continue }
      if (d > "~") {
        j = i + 2; while (j <= i + 5 && substr(line, j, 1) != "'") j++
        if (substr(line, j, 1) == "'") { out = out "' '"; i = j + 1; prev1 = "'"; continue }
      }
    }
    out = out c; prev1 = c; i++
  }
  return out
}

# The module of file `path` (relative to the source directory).
function module_of(path,   m) {
  m = path; sub(/\.rs$/, "", m); sub(/(^|\/)mod$/, "", m)
  if (m == "lib") m = ""
  gsub(/\//, "::", m)
  return m
}
function shown(m) { return m == "" ? "crate" : m }
function join(a, b) { return a == "" ? b : a "::" b }
function parent(m) { if (m !~ /::/) return ""; sub(/::[^:]*$/, "", m); return m }

{
  if (FNR == 1) {
    nf++; fname[nf] = FILENAME; rel = substr(FILENAME, length(SRC) + 2)
    fmod[nf] = module_of(rel); ismod[fmod[nf]] = nf
    blk = 0; instr = 0; inraw = -1; prev1 = ""
  }
  prev1 = ""
  rest = clean($0)
  while (match(rest, /[A-Za-z_][A-Za-z0-9_]*|::|[{}();,*\[\]]/)) {
    nt++; T[nt] = substr(rest, RSTART, RLENGTH); L[nt] = FNR; F[nt] = nf
    rest = substr(rest, RSTART + RLENGTH)
  }
}

# ---- modules declared inline ---------------------------------------------------
function scan_inline(   i, f, depth, sp, cur) {
  f = 0
  for (i = 1; i <= nt; i++) {
    if (F[i] != f) { f = F[i]; depth = 0; sp = 0; cur = fmod[f]; pend = "" }
    if (T[i] == "mod" && T[i + 2] == "{") pend = T[i + 1]
    else if (T[i] == "{") {
      depth++
      if (pend != "") { sp++; sdepth[sp] = depth; cur = join(cur, pend); ismod[cur] = f; pend = "" }
    } else if (T[i] == "}") {
      if (sp > 0 && sdepth[sp] == depth) { sp--; cur = parent(cur) }
      depth--
    }
  }
}

# ---- imports ---------------------------------------------------------------------
function ident(t) { return t ~ /^[A-Za-z_][A-Za-z0-9_]*$/ }

# Records that the code at token `at`, in module `cur`, names `path`.
function record(cur, path, at,   n, s, k, base, to, from, key) {
  n = split(path, s, "::")
  if (s[1] == "crate") { base = ""; k = 2 }
  else if (s[1] == "self") { base = cur; k = 2 }
  else if (s[1] == "super") {
    base = parent(cur); k = 2
    while (k <= n && s[k] == "super") { base = parent(base); k++ }
  } else if (join(cur, s[1]) in ismod) { base = cur; k = 1 }
  else return
  while (k <= n && (join(base, s[k]) in ismod)) { base = join(base, s[k]); k++ }
  to = ismod[base]; from = F[at]
  if (to == from) return
  key = from SUBSEP to
  if (!(key in edge)) {
    edge[key] = fname[from] ":" L[at] ": " path
    nout[from]++; out[from, nout[from]] = to; nedges++
  }
}

# Parses the use tree at token P (prefix: the path so far), recording its paths.
function use_tree(cur, prefix, at,   t) {
  if (T[P] == "::") P++
  while (P <= nt) {
    t = T[P]
    if (t == "{") {
      P++
      while (P <= nt && T[P] != "}") {
        use_tree(cur, prefix, at)
        if (T[P] == ",") P++
        else if (T[P] != "}") P++
      }
      P++; return
    }
    if (t == "*") { P++; if (prefix != "") record(cur, prefix, at); return }
    if (!ident(t)) return
    P++
    if (!(t == "self" && prefix != "")) prefix = join(prefix, t)
    if (T[P] == "::") { P++; continue }
    if (T[P] == "as") P += 2
    record(cur, prefix, at); return
  }
}

function scan_imports(   i, f, depth, sp, cur, p, path, prev, t) {
  f = 0
  for (i = 1; i <= nt; i++) {
    if (F[i] != f) { f = F[i]; depth = 0; sp = 0; cur = fmod[f]; pend = ""; prev = ";" }
    t = T[i]
    if (t == "mod" && T[i + 2] == "{") pend = T[i + 1]
    else if (t == "{") {
      depth++
      if (pend != "") { sp++; sdepth[sp] = depth; cur = join(cur, pend); pend = "" }
    } else if (t == "}") {
      if (sp > 0 && sdepth[sp] == depth) { sp--; cur = parent(cur) }
      depth--
    } else if (t == "use" && (prev ~ /^[;{}\])]$/ || prev == "pub")) {
      P = i + 1
      use_tree(cur, "", i)
      i = P - 1; prev = ";"; continue
    } else if (ident(t) && T[i + 1] == "::" && prev != "::" \
               && (t == "crate" || t == "super" || t == "self" || (join(cur, t) in ismod))) {
      path = t; p = i + 1
      while (T[p] == "::" && ident(T[p + 1])) { path = path "::" T[p + 1]; p += 2 }
      record(cur, path, i)
      i = p - 1; prev = T[i]; continue
    }
    prev = t
  }
}

# ---- circles ---------------------------------------------------------------------
function visit(v,   k, w, j, msg) {
  color[v] = 1; nstack++; stack[nstack] = v
  for (k = 1; k <= nout[v]; k++) {
    w = out[v, k]
    if (color[w] == 1) {
      for (j = 1; j <= nstack && stack[j] != w; j++) ;
      print "import circle in " SRC ":"
      for (; j <= nstack; j++) {
        msg = (j < nstack) ? edge[stack[j], stack[j + 1]] : edge[v, w]
        printf "  %s  (%s)\n", shown(fmod[stack[j]]), msg
      }
      printf "  %s\n", shown(fmod[w])
      print "Break it: move what both sides need into a module of its own, or pass it down."
      found = 1
      return
    }
    if (color[w] == 0) { visit(w); if (found) return }
  }
  color[v] = 2; nstack--
  norder++; order[norder] = v
  # Its layer: one above the highest module it imports.
  layer[v] = 0
  for (k = 1; k <= nout[v]; k++) if (layer[out[v, k]] + 1 > layer[v]) layer[v] = layer[out[v, k]] + 1
  if (layer[v] > top) top = layer[v]
}

END {
  scan_inline(); scan_imports()
  for (f = 1; f <= nf; f++) if (!found && color[f] == 0) visit(f)
  if (found) exit 1
  for (l = 0; l <= top; l++) {
    printf "layer %d:\n", l
    for (n = 1; n <= norder; n++) {
      v = order[n]; if (layer[v] != l) continue
      list = ""
      for (k = 1; k <= nout[v]; k++) list = list (k > 1 ? ", " : "") shown(fmod[out[v, k]])
      printf "  %-20s <- %s\n", shown(fmod[v]), (list == "" ? "-" : list)
    }
  }
  printf "%s: %d modules, %d imports between them, no circle.\n", SRC, nf, nedges
}
AWK
)
LC_ALL=C awk -v SRC="$src" "$prog" "${files[@]}"
