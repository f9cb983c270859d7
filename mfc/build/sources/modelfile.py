"""FROM another Modelfile (a path ending in ``Modelfile`` or ``.modelfile``): built first, as
a dependency, untagged and with its own lockfile; the new image inherits from it."""

from __future__ import annotations

from mfc.build.lockfile import LockedInput
from mfc.build.sources.base import Context, FromRef, Resolved
from mfc.build.sources.files import relative
from mfc.build.sources.images import image_base
from mfc.diagnostics import codes
from mfc.modelfile.refs import is_modelfile_name


def resolve(req: FromRef, ctx: Context) -> Resolved:
    path = req.path
    if not (path.is_file() and is_modelfile_name(path.name)):
        return None
    key = path.resolve()
    if key in req.stack:
        chain = [*req.stack[req.stack.index(key) :], key]
        raise codes.BUILD_CYCLE.error(
            "build cycle: " + " → ".join(str(p) for p in chain),
            req.span,
            label="this FROM closes the cycle",
            hint="a Modelfile cannot be built FROM itself, directly or through others",
        )
    result, fresh = ctx.build_dependency(key, req.stack)
    locked = LockedInput(
        "FROM", req.ref, "modelfile", result.manifest_digest, path=relative(path, req.base_dir)
    )
    # its warnings are reported once, with the top-level build's
    warnings = result.diagnostics if fresh else ()
    return image_base(
        ctx.store, ctx.cache, result.manifest, locked, req.span, warnings, config=result.config
    )
