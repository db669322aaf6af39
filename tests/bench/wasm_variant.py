"""A distinct build of a component: the same bytes plus a custom section (ignored by every
runtime), so it gets its own sha256 and is compiled instead of taken from the cache."""


def custom_section(payload: bytes) -> bytes:
    name = b"routerd-bench"
    body = bytes([len(name)]) + name + payload
    size, out = len(body), b""
    while True:  # the section size, LEB128
        byte, size = size & 0x7F, size >> 7
        out += bytes([byte | (0x80 if size else 0)])
        if not size:
            return b"\x00" + out + body
