"""The embedding model's settings that follow the device it runs on."""

import pytest

from rag.models.embeddings import Embedder, default_batch_size
from rag.settings import EmbeddingSettings


def test_batch_size_follows_the_device() -> None:
    # Measured: 16 is best on a 2-core CPU; on an H100, 256 embeds twice as fast as 16.
    assert default_batch_size("cpu") == 16
    assert default_batch_size("cuda") == default_batch_size("cuda:1") == 256
    assert default_batch_size("mps") == 256


@pytest.mark.slow
def test_unset_batch_size_takes_the_devices_and_a_set_one_wins(embedder: Embedder) -> None:
    assert embedder.batch_size == default_batch_size(embedder.device)
    assert Embedder(EmbeddingSettings(batch_size=7)).batch_size == 7
