"""What runs inside an app's sandbox (and in ``pro app run``): the SDK, the entry processes, the formats.

An app process's package folders (its runtime's, its environment's) are on ``PYTHONPATH``, which
Python puts on ``sys.path`` without reading their ``.pth`` files; reading them here, before any
app code, lets packages that rely on one work as in a virtual environment.
"""

import os as _os
import site as _site

for _folder in filter(None, _os.environ.get("PRO_SITE_DIRS", "").split(_os.pathsep)):
    _site.addsitedir(_folder)
