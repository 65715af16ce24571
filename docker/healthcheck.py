"""The images' HEALTHCHECK: this node's web server answers /healthz (its database too) with 200.

Plain HTTP on PRO_HTTP_PORT, or HTTPS when the node serves its own certificate (PRO_TLS_CERT;
not verified: this is the node checking itself on 127.0.0.1). Redirects are not followed.
"""

from __future__ import annotations

import http.client
import os
import ssl
import sys


def main() -> int:
    port = int(os.environ.get("PRO_HTTP_PORT") or "8000")
    if os.environ.get("PRO_TLS_CERT"):
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=4, context=context)
    else:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=4)
    try:
        connection.request("GET", "/healthz", headers={"Host": "127.0.0.1"})
        status = connection.getresponse().status
    except OSError as exc:
        print(f"healthz: {exc}", file=sys.stderr)
        return 1
    finally:
        connection.close()
    if status != 200:
        print(f"healthz: HTTP {status}", file=sys.stderr)
    return 0 if status == 200 else 1


if __name__ == "__main__":
    sys.exit(main())
