"""Shared pytest fixtures, grouped by the part of the project that uses them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tiny models gain nothing from intra-op threads, and OpenMP threads that spin against another
# busy process on a 2-core machine make each small matmul hundreds of times slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_configure(config):
    try:
        import torch
    except ImportError:  # the torch-free core's tests still run
        return
    torch.set_num_threads(1)

# --- data core: the real datasets shipped beside the checkout --------------------------------

SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``<checkout>/../shared/data`` (gsm8k/, aqua/); tests using it skip where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder not found: {SHARED_DATA}")
    return SHARED_DATA


# --- models and LoRA: tiny offline tokenizer and models (see tests/tiny.py) ------------------


@pytest.fixture(scope="session")
def tiny_tok():
    """The session's tiny byte-level tokenizer with Qwen3-style chat specials; do not mutate
    it (call ``tiny.tiny_tokenizer()`` for a private copy)."""
    from tiny import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture
def tiny_model_factory(tiny_tok):
    """``make(kind, **kw)`` → a fresh seeded tiny model (kinds: ``tiny.TINY_KINDS``).

    Parametrize the kind in the test (``@pytest.mark.parametrize("kind", TINY_KINDS)``) and
    call ``tiny_model_factory(kind)``; ``kw`` (``seed``, ``dtype``) go to ``tiny.tiny_model``.
    """
    from tiny import tiny_model

    return lambda kind, **kw: tiny_model(kind, tiny_tok, **kw)


# --- CLI / training: a tiny model saved as a local directory ---------------------------------


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny Llama-style model + tokenizer written by ``save_pretrained`` (a local model dir)."""
    from tiny import tiny_model, tiny_tokenizer

    path = tmp_path_factory.mktemp("tiny-llama")
    tok = tiny_tokenizer()
    tiny_model("llama", tok).save_pretrained(path)
    tok.save_pretrained(path)
    return path
