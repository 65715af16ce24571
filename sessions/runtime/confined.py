"""The first code of every sandboxed process: ``python -m sessions.runtime.confined MODULE ARGS``.

It installs the system call filter of :func:`sessions.runtime.namespaces.forbid_namespaces`
(no new namespaces, no kernel keyrings: the node's session keyring would otherwise be one place
every sandbox of the node can read and write) and then runs ``MODULE`` as ``python -m`` would.
A fork server is started without it: it makes namespaces for its jobs, which install the same
filter themselves. No Django here.
"""

from __future__ import annotations

import runpy
import sys

from .namespaces import forbid_namespaces


def main() -> None:
    module = sys.argv[1]
    forbid_namespaces()
    sys.argv = [module, *sys.argv[2:]]
    runpy.run_module(module, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main()
