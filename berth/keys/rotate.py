"""`berth admin rotate-master-key`: a new master key, every sealed value sealed again with it.

Order, so that a crash at any point loses nothing: (1) the key file gains the new key (as current) and
keeps the old ones; (2) each sealed column is rewritten in one transaction; (3) the old keys leave the
file. Running nodes that meet the new key id re-read the file (MasterKey.open). Run it again after a
crash: values already under the new key are sealed again, harmlessly.
"""

from __future__ import annotations

from pathlib import Path

from berth.db import sealed as qs
from berth.db.store import Backend
from berth.keys import SEALED, MasterKey, Sealed


async def rotate_master_key(db: Backend, path: Path) -> tuple[tuple[str, ...], str, int]:
    """(old key ids, new key id, values sealed again)."""
    old = MasterKey.load(path)
    ring = old.with_new_key()
    ring.save()
    n = 0
    for col in SEALED:
        def change(row_id: str, value: str, col: Sealed = col) -> str:
            return ring.seal(ring.open(value, col.context(row_id)), col.context(row_id))
        n += await db.write(qs.rewrite, col.table, col.id_column, col.value_column, change)
    ring.only_current().save()
    return old.key_ids, ring.current, n
