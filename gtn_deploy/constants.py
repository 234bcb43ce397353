"""Names that device profiles, the cost model, bundles and the CLI all use.

Stdlib only and defined once here, so that each of those imports them without pulling in
pydantic or torch (``manifest`` and ``gtnd --help`` stay light).
"""

from __future__ import annotations

# Numeric precisions a profile can list, the cost model predicts and a bundle recommends.
# profile_schema.Precision repeats them as a Literal (a test keeps the two equal).
PRECISIONS = ("fp32", "fp16", "int8")

# Op classes of the latency model: a layer's class picks its efficiency in the profile.
# profile_schema.Efficiencies has one field per class (a test keeps them equal).
OP_CLASSES = ("conv", "pointwise", "depthwise", "se", "linear", "pool", "elementwise")

# The first network family (gtn_deploy.spaces): plans, configs and bundles written before
# families existed name none, and theirs is this one.
DEFAULT_FAMILY = "mbconv"
