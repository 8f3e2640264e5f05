#!/usr/bin/env python3
"""Regenerate test_data/ketama.tsv: libketama-compatible key -> node vectors.

    pip install uhashring==2.5
    python3 test_data/ketama_vectors.py          # writes test_data/ketama.tsv

The node column comes from uhashring's ketama mode, `HashRing(NODES, hash_fn="ketama")`
(40 MD5s of "host:port-i" per node, 4 little-endian u32 points each = 160 points; key hash =
little-endian u32 of md5(key)[0:4]). Every vector is also checked against `ref_node` below, a
plain-hashlib transcription of libketama's ketama_create_continuum / ketama_get_server; the
script refuses to write the file if the two disagree on any key.
"""
import bisect
import hashlib
import os
from importlib.metadata import version

from uhashring import HashRing

NODES = ["10.0.0.1:11211", "10.0.0.2:11211", "10.0.0.3:11211"]
OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "ketama.tsv")


# --- independent reference (libketama, equal weights) -----------------------------------------
def le32(b):
    return int.from_bytes(b[:4], "little")


def ref_ring(nodes):
    pts = []
    for n, name in enumerate(nodes):
        for i in range(40):  # sprintf(ss, "%s-%d", addr, k), k < 40
            d = hashlib.md5(f"{name}-{i}".encode()).digest()
            pts += [(le32(d[4 * h:]), n) for h in range(4)]
    pts.sort()  # (point, server order)
    return [p for p, _ in pts], [nodes[n] for _, n in pts]


def ref_node(ring, key):
    points, owners = ring
    # ketama_get_server: first point >= hash (h <= midval && h > midval1), else wrap to [0]
    i = bisect.bisect_left(points, le32(hashlib.md5(key.encode()).digest()))
    return owners[i if i < len(points) else 0]


# --- keys: 1000 + 600 + 400 = 2000, no TAB/CR/LF, none starting with '#' -----------------------
def keys():
    ks = [f"post:{i}" for i in range(1000)]
    subs = ["programming", "rust", "python", "golang", "linux", "askreddit", "worldnews",
            "science", "aww", "pics", "gaming", "movies", "music", "books", "history",
            "space", "math", "cpp", "haskell", "emacs", "vim", "netsec", "sysadmin",
            "devops", "databases", "memcached", "redis", "postgres", "datascience", "food"]
    sorts = ["hot", "new", "top", "rising", "controversial"]
    ks += [f"posts:v{v}:r/{s}:{o}" for v in range(1, 5) for s in subs for o in sorts]
    odd = ["café", "cafe\u0301", "naïve:ключ", "用户:资料", "ユーザー/設定", "مستخدم:١٢٣",
           "🦀:crab", "🚀🔥💯", "emoji:👩‍💻", "Ωmega≈∞", "straße", "ﬁle:ligature",
           "a b c", " leading-space", "trailing-space ", "quote\"d", "it's", "back\\slash",
           "semi;colon", "pipe|bar", "amp&ersand", "per%cent", "dollar$", "at@sign",
           "q?mark=1&x=2", "brackets[0]{1}(2)<3>", "comma,separated", "tilde~caret^",
           "star*plus+", "hash#mid", "!bang", "=equals", "colon::double", "\x7fdel",
           "zero-width\u200bspace", "nbsp\u00a0here", "under_score", "slash/ed/path/", ".", ":"]
    ks += [f"{b}{i}" if i else b for i in range(10) for b in odd]  # 40 bases x 10 = 400
    return ks


def main():
    ks = keys()
    assert len(ks) == 2000 and len(set(ks)) == 2000
    for k in ks:  # the TSV must round-trip through Rust's str::lines + split_once('\t')
        assert k and not k.startswith("#") and not any(c in k for c in "\t\r\n"), repr(k)
    uh = HashRing(NODES, hash_fn="ketama")
    assert sorted(uh.distribution.values()) == [160] * len(NODES)
    ref = ref_ring(NODES)
    assert len(set(ref[0])) == len(ref[0]) == 160 * len(NODES), "point collision"
    rows = [(k, uh.get_node(k)) for k in ks]
    bad = [(k, n, ref_node(ref, k)) for k, n in rows if n != ref_node(ref, k)]
    assert not bad, f"uhashring and reference disagree on {len(bad)} keys: {bad[:5]}"
    with open(OUT, "w", encoding="utf-8", newline="\n") as f:
        f.write(f"# libketama-compatible vectors from Python uhashring {version('uhashring')},\n"
                f'# HashRing(nodes, hash_fn="ketama") (40 md5s x 4 points per node), checked\n'
                "# against a plain hashlib reference. Regenerate: python3 test_data/ketama_vectors.py\n"
                "# Next line: nodes; then key<TAB>node.\n")
        f.write(",".join(NODES) + "\n")
        f.writelines(f"{k}\t{n}\n" for k, n in rows)
    print(f"wrote {len(rows)} vectors to {OUT}; uhashring == reference on all")


if __name__ == "__main__":
    main()
