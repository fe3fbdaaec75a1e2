"""Every method of the suite, one module per method (or family).

Importing this package registers them all in ``benchmark.method.METHODS``. Adding a method is
one new file with one ``@register_method("name")`` class, plus its import line here.
"""
from . import ce  # noqa: F401
from . import logit_adjust  # noqa: F401
from . import mixup  # noqa: F401
from . import ros  # noqa: F401
from . import reweight  # noqa: F401
from . import ldam  # noqa: F401
from . import ib  # noqa: F401
from . import maxnorm  # noqa: F401
from . import brl  # noqa: F401
from . import glmc  # noqa: F401
from . import ride  # noqa: F401
from . import bcl  # noqa: F401
from . import fr_head  # noqa: F401
from . import paco  # noqa: F401
from . import fsa  # noqa: F401
from . import stmix  # noqa: F401
from . import shapmix  # noqa: F401
