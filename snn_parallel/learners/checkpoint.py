r"""Checkpoint files: written atomically, checksummed, verified before anything is loaded.

A checkpoint file is a fixed header followed by the payload, the trainer's state as
``torch.save`` writes it:

==========  ========  ====================================================
bytes       field     content
==========  ========  ====================================================
0 .. 7      magic     ``b"SNNPCKPT"``
8 .. 11     version   format version, little-endian uint32 (1)
12 .. 19    length    payload bytes, little-endian uint64
20 .. 51    sha256    SHA-256 digest of the payload
52 ..       payload   ``torch.save`` of the state (tensors and plain Python values only)
==========  ========  ====================================================

:func:`write_checkpoint` writes a temporary file next to the target, flushes it to disk and
renames it over the target, so a crash leaves either the old file or the new one, never half
of one. :func:`read_checkpoint` refuses an empty, truncated, foreign or altered file (one
flipped bit changes the digest) with a ``ValueError`` that names the file and the reason, and
loads the payload with ``weights_only=True``, so a checkpoint cannot run code.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["write_checkpoint", "read_checkpoint", "numpy_rng_state", "set_numpy_rng_state"]

MAGIC = b"SNNPCKPT"
VERSION = 1
_HEADER = struct.Struct("<8sIQ32s")


def write_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """Write ``state`` to ``path`` atomically (temporary file in the same folder, then rename)."""
    path = Path(path)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    payload = buffer.getvalue()
    header = _HEADER.pack(MAGIC, VERSION, len(payload), hashlib.sha256(payload).digest())
    handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(handle, "wb") as file:
            file.write(header)
            file.write(payload)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _sync_folder(path.parent)


def read_checkpoint(path: str | os.PathLike, map_location: torch.device | str = "cpu") -> dict[str, Any]:
    """The state in ``path``, after checking its header, length and checksum.

    Raises:
        FileNotFoundError, PermissionError: the file cannot be opened (the message names it).
        ValueError: the file is empty, truncated, not a checkpoint of this library, of a newer
            format, altered (its checksum does not match), or its payload does not load.
    """
    path = Path(path)
    data = path.read_bytes()
    if not data:
        raise ValueError(f"checkpoint {path} is empty (0 bytes)")
    if not data.startswith(MAGIC):
        kind = "a plain torch.save file" if data.startswith(b"PK") else "some other file"
        raise ValueError(
            f"{path} is not an snn_parallel checkpoint ({kind}; Trainer.save writes files that start with {MAGIC!r})"
        )
    if len(data) < _HEADER.size:
        raise ValueError(
            f"checkpoint {path} is truncated: {len(data)} bytes, shorter than its {_HEADER.size}-byte header"
        )
    _, version, length, digest = _HEADER.unpack_from(data)
    if version != VERSION:
        raise ValueError(
            f"checkpoint {path} has format version {version}; this version of snn_parallel reads {VERSION}"
        )
    payload = data[_HEADER.size :]
    if len(payload) < length:
        raise ValueError(f"checkpoint {path} is truncated: {len(payload)} of its {length} payload bytes are there")
    if len(payload) > length:
        raise ValueError(f"checkpoint {path} has {len(payload) - length} bytes after its {length}-byte payload")
    if hashlib.sha256(payload).digest() != digest:
        raise ValueError(f"checkpoint {path} is corrupted: its SHA-256 checksum does not match its content")
    try:
        state = torch.load(io.BytesIO(payload), map_location=map_location, weights_only=True)
    except Exception as error:  # the checksum matched, so the writer stored something torch cannot read back
        raise ValueError(f"checkpoint {path}: the payload does not load ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict):
        raise ValueError(f"checkpoint {path} holds a {type(state).__name__}, not a trainer's state")
    return state


def numpy_rng_state() -> dict[str, Any]:
    """NumPy's global generator state as tensors and numbers (loadable with ``weights_only=True``)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "bit_generator": name,
        "keys": torch.from_numpy(keys.astype(np.int64)),
        "position": int(position),
        "has_gauss": int(has_gauss),
        "cached_gaussian": float(cached),
    }


def set_numpy_rng_state(state: dict[str, Any]) -> None:
    """Restore :func:`numpy_rng_state`."""
    keys = state["keys"].cpu().numpy().astype(np.uint32)
    np.random.set_state((state["bit_generator"], keys, state["position"], state["has_gauss"], state["cached_gaussian"]))


def _sync_folder(folder: Path) -> None:
    """Flush the rename to disk where the platform allows opening a folder (POSIX)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


_ENTRIES = ("model", "optimizer", "rule", "rule_state", "epoch", "global_step", "history", "rng")


def check_state(state: object, rule: str, model: torch.nn.Module) -> None:
    """Check a trainer's state against the trainer's rule and model before anything is restored.

    Raises:
        ValueError: an entry is missing or of the wrong kind, the state is of another rule, the
            model's entries differ in names or shapes, or its weights hold NaN or inf.
    """
    if not isinstance(state, dict):
        raise ValueError(f"a trainer's state is a dict, got {type(state).__name__}")
    missing = [key for key in _ENTRIES if key not in state]
    if missing:
        raise ValueError(f"the state lacks {', '.join(missing)}; it was not written by Trainer.state_dict")
    if state["rule"] != rule:
        raise ValueError(f"it was written by a {state['rule']!r} trainer, this is {rule!r}")
    _check_model_state(state["model"], model)
    for key in ("epoch", "global_step"):
        value = state[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"the state's {key} must be an int >= 0, got {value!r}")
    if not isinstance(state["history"], list) or not all(isinstance(record, dict) for record in state["history"]):
        raise ValueError("the state's history must be a list of dicts, one per epoch")
    rng = state["rng"]
    if not isinstance(rng, dict) or {"torch", "numpy", "python", "loader"} - rng.keys():
        raise ValueError("the state's rng must hold the 'torch', 'numpy', 'python' and 'loader' generator states")
    for key in ("torch", "loader"):
        value = rng[key]
        if not (value is None and key == "loader") and not (
            isinstance(value, torch.Tensor) and value.dtype == torch.uint8
        ):
            raise ValueError(f"the state's {key} generator state must be a uint8 tensor, got {type(value).__name__}")
    numpy_state = rng["numpy"]
    if (
        not isinstance(numpy_state, dict)
        or {"bit_generator", "keys", "position", "has_gauss", "cached_gaussian"} - numpy_state.keys()
    ):
        raise ValueError("the state's numpy generator state is not the one Trainer.state_dict writes")


def _check_model_state(given: object, model: torch.nn.Module) -> None:
    if not isinstance(given, dict):
        raise ValueError(f"the state's model entry must be a state dict, got {type(given).__name__}")
    expected = model.state_dict()
    missing, unexpected = expected.keys() - given.keys(), given.keys() - expected.keys()
    if missing or unexpected:
        parts = [
            f"missing {sorted(missing)[:5]}" if missing else "",
            f"unexpected {sorted(unexpected)[:5]}" if unexpected else "",
        ]
        raise ValueError(f"the model's entries differ from this model's: {'; '.join(p for p in parts if p)}")
    parameters = {name for name, _ in model.named_parameters()}
    for name, value in given.items():
        if not isinstance(value, torch.Tensor):
            raise ValueError(f"the model's entry {name!r} is a {type(value).__name__}, not a tensor")
        if value.shape != expected[name].shape:
            raise ValueError(
                f"the model's entry {name!r} has shape {list(value.shape)}, this model's {list(expected[name].shape)}"
            )
        if (
            name in parameters
            and (value.is_floating_point() or value.is_complex())
            and not bool(torch.isfinite(value).all())
        ):
            raise ValueError(f"the model's weight {name!r} holds NaN or infinite values")
