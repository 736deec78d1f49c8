"""One base for the package's own errors, beside the standard base each keeps."""

from __future__ import annotations

import pytest

import gossip_tui
from gossip_tui._config_file import SettingsError
from gossip_tui.api._app import HttpError
from gossip_tui.cli import CliError
from gossip_tui.core.codec import DecodeError, DecompressionBomb, EncodeError
from gossip_tui.core.engine import NodeIsLive
from gossip_tui.core.errors import GossipTuiError
from gossip_tui.core.keys import SecretKeyError
from gossip_tui.core.models import AddressError
from gossip_tui.node import DatagramRejected, KeysNotSaved, KeyValueTooLarge, NodeStateFull
from gossip_tui.node._crypto import Misaddressed
from gossip_tui.node._local_store import CorruptStateFile
from gossip_tui.testing._loopback import NotLoopback

VALUE_ERRORS = [
    DecodeError,
    DecompressionBomb,
    EncodeError,
    AddressError,
    SecretKeyError,
    KeyValueTooLarge,
    NodeStateFull,
    CorruptStateFile,
    NotLoopback,
    NodeIsLive,
    SettingsError,
]
OTHERS = [KeysNotSaved, DatagramRejected, Misaddressed, HttpError, CliError]


@pytest.mark.parametrize("error", VALUE_ERRORS + OTHERS, ids=lambda e: e.__name__)
def test_every_error_of_the_package_is_a_gossip_tui_error(error: type[Exception]) -> None:
    assert issubclass(error, GossipTuiError)
    assert gossip_tui.GossipTuiError is GossipTuiError


@pytest.mark.parametrize("error", VALUE_ERRORS, ids=lambda e: e.__name__)
def test_value_errors_stay_value_errors(error: type[Exception]) -> None:
    assert issubclass(error, ValueError)


def test_keys_not_saved_stays_an_os_error_with_its_errno() -> None:
    error = KeysNotSaved(28, "no space left")
    assert isinstance(error, OSError) and error.errno == 28
