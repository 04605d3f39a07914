"""Which S3 client for the S3 driver: obstore against boto3, measured on a real radosgw.

    python bench/s3_clients.py [--size-mib 1024] [--small 1000] [--concurrency 16] [--endpoint URL ...]

Without --endpoint it starts its own throwaway one-node Ceph (tests/support/ceph.py) and stops it at
the end. Every row moves the same bytes: one big object put and got back (its sha256 checked), then
`--small` objects of 4-64 KiB put, got and deleted with `--concurrency` requests in flight.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.support.ceph

MiB = 1 << 20
PART = 8 * MiB


class Blocks:
    """`size` bytes of incompressible data, 1 MiB blocks cut from a random pool; hashed as they go."""

    def __init__(self, size: int, seed: int = 1) -> None:
        rnd = random.Random(seed)
        self.size = size
        self.pool = rnd.randbytes(17 * MiB)
        self.sha = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        sent, i = 0, 0
        while sent < self.size:
            start = (i * 7919) % (16 * MiB)
            block = self.pool[start:start + min(MiB, self.size - sent)]
            self.sha.update(block)
            sent += len(block)
            i += 1
            yield block

    def parts(self, part: int = PART) -> Iterator[bytes]:
        buf = bytearray()
        for block in self:
            buf += block
            if len(buf) >= part:
                yield bytes(buf)
                buf.clear()
        if buf:
            yield bytes(buf)

    def digest(self) -> str:
        return self.sha.hexdigest()


def timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


# ---- boto3 ------------------------------------------------------------------------------------------

def boto3_client(ep: dict, pool: int) -> object:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=ep["endpoint"], region_name=ep["region"],
                        aws_access_key_id=ep["key"], aws_secret_access_key=ep["secret"],
                        config=Config(s3={"addressing_style": "path"}, max_pool_connections=pool,
                                      retries={"max_attempts": 3}))


def boto3_rows(ep: dict, bucket: str, size: int, small: list[bytes], conc: int) -> dict[str, float]:
    s3 = boto3_client(ep, conc)
    out = {}

    def put_parts(in_flight: int) -> str:
        """What a resumable writer does: parts cut from the stream, `in_flight` uploads at a time."""
        blocks = Blocks(size)
        up = s3.create_multipart_upload(Bucket=bucket, Key="big-seq")
        futures = []
        with ThreadPoolExecutor(in_flight) as pool:
            for n, data in enumerate(blocks.parts(), 1):
                while sum(not f.done() for f in futures) >= in_flight:
                    time.sleep(0.001)
                futures.append(pool.submit(s3.upload_part, Bucket=bucket, Key="big-seq", UploadId=up["UploadId"],
                                           PartNumber=n, Body=data))
        parts = [{"PartNumber": n, "ETag": f.result()["ETag"]} for n, f in enumerate(futures, 1)]
        s3.complete_multipart_upload(Bucket=bucket, Key="big-seq", UploadId=up["UploadId"],
                                     MultipartUpload={"Parts": parts})
        return blocks.digest()

    digest = ""

    def run_put(in_flight: int) -> None:
        nonlocal digest
        digest = put_parts(in_flight)

    out["big_put_seq"] = size / timed(lambda: run_put(1)) / 1e6
    out["big_put"] = size / timed(lambda: run_put(4)) / 1e6

    def get() -> None:
        h = hashlib.sha256()
        body = s3.get_object(Bucket=bucket, Key="big-seq")["Body"]
        for chunk in body.iter_chunks(MiB):
            h.update(chunk)
        assert h.hexdigest() == digest, "boto3: big object differs"

    out["big_get"] = size / timed(get) / 1e6
    s3.delete_object(Bucket=bucket, Key="big-seq")

    keys = [f"small/{i:05d}" for i in range(len(small))]
    with ThreadPoolExecutor(conc) as pool:
        out["small_put"] = len(small) / timed(lambda: list(pool.map(
            lambda kv: s3.put_object(Bucket=bucket, Key=kv[0], Body=kv[1]), zip(keys, small, strict=True))))

        def get_one(kv: tuple[str, bytes]) -> None:
            assert s3.get_object(Bucket=bucket, Key=kv[0])["Body"].read() == kv[1]

        out["small_get"] = len(small) / timed(lambda: list(pool.map(get_one, zip(keys, small, strict=True))))

    def delete_all() -> None:
        for i in range(0, len(keys), 1000):
            s3.delete_objects(Bucket=bucket, Delete={"Objects": [{"Key": k} for k in keys[i:i + 1000]],
                                                     "Quiet": True})

    out["small_delete"] = len(small) / timed(delete_all)
    return out


# ---- obstore ----------------------------------------------------------------------------------------

def obstore_store(ep: dict, bucket: str) -> object:
    from obstore.store import S3Store

    return S3Store(bucket, endpoint=ep["endpoint"], region=ep["region"], access_key_id=ep["key"],
                   secret_access_key=ep["secret"], virtual_hosted_style_request=False,
                   client_options={"allow_http": True})


def obstore_rows(ep: dict, bucket: str, size: int, small: list[bytes], conc: int) -> dict[str, float]:
    import obstore

    store = obstore_store(ep, bucket)
    out = {}
    blocks = Blocks(size)
    out["big_put_seq"] = size / timed(lambda: obstore.put(store, "big-ob", iter(blocks), chunk_size=PART,
                                                          max_concurrency=1)) / 1e6
    blocks = Blocks(size)
    out["big_put"] = size / timed(lambda: obstore.put(store, "big-ob", iter(blocks), chunk_size=PART,
                                                      max_concurrency=4)) / 1e6
    digest = blocks.digest()

    def get() -> None:
        h = hashlib.sha256()
        for chunk in obstore.get(store, "big-ob").stream(min_chunk_size=MiB):
            h.update(chunk)
        assert h.hexdigest() == digest, "obstore: big object differs"

    out["big_get"] = size / timed(get) / 1e6
    obstore.delete(store, "big-ob")

    keys = [f"small/{i:05d}" for i in range(len(small))]

    async def many(fn: Callable[[str, bytes], object]) -> None:
        sem = asyncio.Semaphore(conc)

        async def one(k: str, v: bytes) -> None:
            async with sem:
                await fn(k, v)  # type: ignore[misc]

        await asyncio.gather(*(one(k, v) for k, v in zip(keys, small, strict=True)))

    async def get_one(k: str, v: bytes) -> None:
        r = await obstore.get_async(store, k)
        assert bytes(await r.bytes_async()) == v

    out["small_put"] = len(small) / timed(lambda: asyncio.run(many(
        lambda k, v: obstore.put_async(store, k, v))))
    out["small_get"] = len(small) / timed(lambda: asyncio.run(many(get_one)))
    out["small_delete"] = len(small) / timed(lambda: obstore.delete(store, keys))
    return out


ROWS = [("big_put_seq", "put {size} object, 8 MiB parts, 1 in flight (MB/s)"),
        ("big_put", "put {size} object, 8 MiB parts, 4 in flight (MB/s)"),
        ("big_get", "get {size} object, streamed (MB/s)"),
        ("small_put", "put {n} small objects, {c} in flight (objects/s)"),
        ("small_get", "get {n} small objects, {c} in flight (objects/s)"),
        ("small_delete", "batch delete {n} objects (objects/s)")]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size-mib", type=int, default=1024)
    p.add_argument("--small", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=16)
    p.add_argument("--rounds", type=int, default=1, help="repeat and keep the best of each row")
    p.add_argument("--endpoint", help="an existing S3 endpoint (with --key, --secret, --bucket)")
    p.add_argument("--key", default="")
    p.add_argument("--secret", default="")
    p.add_argument("--bucket", default="")
    args = p.parse_args()
    cluster = None
    if args.endpoint:
        ep = {"endpoint": args.endpoint, "region": "us-east-1", "key": args.key, "secret": args.secret}
        bucket = args.bucket
    else:
        from tests.support.ceph import CephCluster

        print("starting a one-node Ceph ...", file=sys.stderr)
        cluster = CephCluster(memstore_bytes=max(4 << 30, 3 * args.size_mib * MiB)).start()
        print(f"  ready in {cluster.started_in:.1f} s", file=sys.stderr)
        ep = {"endpoint": cluster.endpoint, "region": cluster.region, "key": cluster.access_key,
              "secret": cluster.secret_key}
        bucket = cluster.new_bucket("clients")
        warm = cluster.client()  # radosgw's first object and first multipart upload take ~2 s each: no row pays
        warm.put_object(Bucket=bucket, Key="warm", Body=b"x")
        warm.get_object(Bucket=bucket, Key="warm")["Body"].read()
        up = warm.create_multipart_upload(Bucket=bucket, Key="warm-mp")
        warm.abort_multipart_upload(Bucket=bucket, Key="warm-mp", UploadId=up["UploadId"])
    try:
        rnd = random.Random(2)
        small = [os.urandom(rnd.randint(4 << 10, 64 << 10)) for _ in range(args.small)]
        size = args.size_mib * MiB
        results: dict[str, dict[str, float]] = {}
        for _ in range(args.rounds):
            for name, fn in (("boto3", boto3_rows), ("obstore", obstore_rows)):
                print(f"{name} ...", file=sys.stderr)
                rows = fn(ep, bucket, size, small, args.concurrency)
                best = results.setdefault(name, {})
                for k, v in rows.items():
                    best[k] = max(best.get(k, 0.0), v)
                time.sleep(6)  # radosgw's GC frees the deleted big object before the next round
    finally:
        if cluster is not None:
            cluster.stop()
    label_size = f"{args.size_mib} MiB" if args.size_mib % 1024 else f"{args.size_mib // 1024} GiB"
    print(f"\nS3 clients on radosgw (Ceph 16.2, memstore), {os.cpu_count()} CPUs, best of {args.rounds}\n")
    print("| workload | boto3 | obstore | obstore/boto3 |\n|---|---:|---:|---:|")
    for key, label in ROWS:
        b, o = results["boto3"][key], results["obstore"][key]
        print(f"| {label.format(size=label_size, n=args.small, c=args.concurrency)} | {b:.0f} | {o:.0f} | "
              f"{o / b:.2f}× |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
