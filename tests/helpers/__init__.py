"""Test helpers: the service stack as real processes (see `tests/helpers/stack.py`)."""

from tests.helpers.stack import (
    ADMIN_TOKEN,
    Stack,
    clone_version,
    copy_index_store,
    current_version,
    demo_data_dir,
    running_stack,
    set_current,
    shared_stack,
    start_stack,
)

__all__ = [
    "ADMIN_TOKEN",
    "Stack",
    "clone_version",
    "copy_index_store",
    "current_version",
    "demo_data_dir",
    "running_stack",
    "set_current",
    "shared_stack",
    "start_stack",
]
