# -*- coding: utf-8 -*-
# Copyright: (c) 2026, gpuops.nvidia contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The version rules table: what each containerd and k0s release does with a config file.

This is the ONE place that states a version boundary. The containerd engine, the facts module, the
role and the tests ask it; none of them compares release numbers itself. Every rule names the fact it
rests on: "verified" = run on a real build of that release (the project's tests for Debian's 1.6.20,
1.7.24 and 2.1.9; the captured outputs in tests/fixtures/containerd/ for 2.0.11, 2.2.7 and 2.3.4);
"k0s source" = read in k0sproject/k0s at the release tags (pkg/component/worker/containerd,
embedded-bins/Makefile.variables). Plain Python, no imports beyond the standard library.
"""

from __future__ import absolute_import, division, print_function

__metaclass__ = type

import re

# --------------------------------------------------------------------------- config file versions
# Where the CRI runtime settings live, per config *file* version (verified, all builds): v1
# ``plugins.cri``, v2 ``plugins."io.containerd.grpc.v1.cri"``, v3 ``plugins."io.containerd.cri.v1.runtime"``;
# v4 (containerd 2.3) moves grpc/ttrpc/debug/metrics into io.containerd.server.v1.* plugins but keeps the
# CRI runtime tables where v3 has them (2.3.4-config-default.toml).
CRI_PATHS = {
    1: ("plugins", "cri"),
    2: ("plugins", "io.containerd.grpc.v1.cri"),
    3: ("plugins", "io.containerd.cri.v1.runtime"),
    4: ("plugins", "io.containerd.cri.v1.runtime"),
}
CONFIG_VERSIONS = tuple(sorted(CRI_PATHS))
# Every plugin id that is "the CRI plugin" in some version (disabled_plugins, ctr plugins ls).
CRI_PLUGIN_IDS = ("cri", "io.containerd.grpc.v1.cri", "io.containerd.cri.v1.runtime", "io.containerd.cri.v1.images")
# `ctr plugins ls` rows (type, id) whose status is the CRI plugin's health, per major version: 1.x serves
# CRI from io.containerd.grpc.v1 cri; 2.x splits it, and the runtime plugin is the one that reads the
# runtime tables, while io.containerd.grpc.v1 cri (the gRPC service) depends on it (verified 1.6/1.7/2.1).
CRI_HEALTH_ROWS = {
    1: (("io.containerd.grpc.v1", "cri"),),
    2: (("io.containerd.grpc.v1", "cri"), ("io.containerd.cri.v1", "runtime")),
}
DROP_IN_DIR = "/etc/containerd/conf.d"


def _v(text):
    """'2.3.4' / 'v1.36.3+k0s.0' / (2, 3) -> a tuple of ints (missing parts are 0); None when unreadable."""
    if text is None:
        return None
    if isinstance(text, tuple):
        return tuple(text) + (0,) * (3 - len(text))
    m = re.match(r"^\s*v?(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(text))
    if not m:
        return None
    return tuple(int(x or 0) for x in m.groups())


def vstr(version):
    return ".".join(str(x) for x in version) if version else None


class ContainerdRules(object):
    """What a containerd release does with its config files. ``version`` None: not known (no binary yet).

    Attributes (each with the fact it rests on):

    * ``max_config_version``: the highest file version it loads. 1.x: 2 (verified); 2.0-2.2: 3 (2.0.11 and
      2.2.7 refuse a v4 file: "expected containerd config version equal to or less than `3`, got `4`");
      2.3+: 4 (2.3.4 loads v4, migrates v3 in memory).
    * ``default_config_version``: what its ``config default`` writes, and so what an empty file gets:
      1.x 2, 2.0-2.2 3, 2.3+ 4 (verified on each build).
    * ``reads_v1``: 2.x ignores a v1 file's ``plugins.cri`` (verified on 2.1.9).
    * ``imports_deep_merge``: from 2.0.0 an imported file is deep-merged; before, it replaces whole plugin
      sections (verified on 1.6/1.7 and 2.0.11; NVIDIA's code comment says 2.1: off by one release).
    * ``file_runtimes_replace_builtin``: before 2.0 a file's ``runtimes`` table replaces the built-in map,
      so a file holding only ``nvidia`` loses ``runc`` (verified 1.6/1.7; 2.x merges, verified 2.1.9).
    * ``default_imports``: the ``imports`` line of its ``config default`` (2.0.11 ``[]``; 2.2.7 and 2.3.4
      ``['/etc/containerd/conf.d/*.toml']``). A file on disk without that line does not get it.
    * ``cdi``: ``enable_cdi`` exists from 1.7 (1.6.20's CRI config has no such field, verified).
    """

    def __init__(self, version):
        self.version = _v(version)
        v = self.version
        self.known = v is not None
        if v is None:
            # Unknown binary: everything is read from the file (see for_unknown_binary).
            self.max_config_version = max(CONFIG_VERSIONS)
            self.default_config_version = None
            self.reads_v1 = True
            self.imports_deep_merge = None
            self.file_runtimes_replace_builtin = None
            self.default_imports = []
            self.cdi = True
            self.major = None
            return
        self.major = v[0]
        two = v >= (2, 0, 0)
        self.max_config_version = 4 if v >= (2, 3, 0) else (3 if two else 2)
        self.default_config_version = self.max_config_version
        self.reads_v1 = not two
        self.imports_deep_merge = two
        self.file_runtimes_replace_builtin = not two
        self.default_imports = [DROP_IN_DIR + "/*.toml"] if v >= (2, 2, 0) else []
        self.cdi = v >= (1, 7, 0)

    @property
    def health_rows(self):
        """The `ctr plugins ls` rows that must be `ok` for the CRI plugin to be healthy."""
        return CRI_HEALTH_ROWS[2 if (self.major or 1) >= 2 else 1]

    def describe(self):
        return "containerd %s" % (vstr(self.version) or "(version unknown)")

    def check_config_version(self, config_version, name):
        """None when this containerd loads a file of ``config_version``, else the reason (an error text)."""
        if config_version not in CRI_PATHS:
            return ("%s: unknown config version %r (this module knows %s; %s)"
                    % (name, config_version, ", ".join(str(x) for x in CONFIG_VERSIONS), self.describe()))
        if not self.known:
            return None
        if config_version == 1 and not self.reads_v1:
            return ("%s is a version 1 config, which %s ignores (its CRI section 'plugins.cri' is not read); "
                    "migrate it first: containerd config migrate" % (name, self.describe()))
        if config_version > self.max_config_version:
            return ("%s: config version %d needs a newer containerd: %s loads versions up to %d"
                    % (name, config_version, self.describe(), self.max_config_version))
        return None

    def guess_for_file(self, config_version):
        """Rules to apply when the binary is unknown: v1/v2 files are read by 1.x, v3 by 2.0-2.2, v4 by 2.3+
        (what loads such a file at all, see max_config_version)."""
        if self.known:
            return self
        return ContainerdRules({1: (1, 7, 0), 2: (1, 7, 0), 3: (2, 0, 0), 4: (2, 3, 0)}.get(config_version, (2, 3, 0)))

    def empty_file_version(self):
        """The version an empty or missing config gets: this binary's ``config default`` (2 when unknown)."""
        return self.default_config_version or 2

    def drop_in_version(self, main_version):
        """The version a drop-in imported by a main file of ``main_version`` carries: the same.

        Higher is refused by 2.3.0-2.3.4 ("drop-in config version 3 higher than root config version 2"),
        and a v3 drop-in on a v2 main file loads on 2.0/2.2 but silently drops every CRI setting of the
        main file (verified); the same version is fine everywhere (verified 2.0.11/2.2.7/2.3.4).
        """
        return main_version

    def drop_in_layout(self):
        """True when a drop-in may hold only our tables (deep merge); False: it must carry a copy of the
        main file's whole CRI section. Unknown binary: False (safe on every release)."""
        return bool(self.imports_deep_merge)

    def auto_layout(self):
        """``layout: auto``: 'drop_in' where imports deep-merge (a drop-in holds only our tables), else
        'in_place' (a drop-in would need a copy of the CRI section that shadows later edits)."""
        return "drop_in" if self.imports_deep_merge else "in_place"


def containerd(version):
    return ContainerdRules(version)


# --------------------------------------------------------------------------- k0s
# k0s releases and what they do with /etc/k0s/containerd.d (k0s source, per tag v1.27.1 ... v1.36.3):
# (first release of the row, bundled containerd series, drop-in config version, how drop-ins are loaded,
#  marker rule of `# k0s_managed=true`)
K0S_RELEASES = (
    # before 1.27.1 k0s has no containerd.d support at all
    ((0, 0, 0), None, None, "unsupported", "any_line"),
    # 1.27.1-1.27.4 (and 1.28.0-1.28.1) append CRI drop-ins to the default CRI config instead of merging
    # them (`# appended from <file>`): a drop-in repeating a table the default defines (runtimes.runc)
    # makes /run/k0s/containerd-cri.toml invalid. Fixed in 1.27.5 / 1.28.2.
    ((1, 27, 1), (1, 7, 0), 2, "concatenate", "any_line"),
    ((1, 27, 5), (1, 7, 0), 2, "merge_patch", "any_line"),
    ((1, 28, 0), (1, 7, 0), 2, "concatenate", "any_line"),
    ((1, 28, 2), (1, 7, 0), 2, "merge_patch", "any_line"),
    # 1.27.5-1.35: RFC 7396 merge patch onto `version = 2` + the default CRI config; bundled containerd 1.7
    ((1, 30, 0), (1, 7, 0), 2, "merge_patch", "equal_line"),
    # 1.36: containerd.toml imports containerd.d/*.toml, containerd 2.3.x merges; pre-flight
    # (ValidateConfigFile) rejects a drop-in whose version is not the integer 3 or that has a grpc.v1.cri
    # section. 1.36.1 -> 2.3.1 ... 1.36.3 -> 2.3.3 (main -> 2.3.4): `config dump` says version 4.
    ((1, 36, 0), (2, 3, 0), 3, "containerd_imports", "first_line"),
)
K0S_MARKER = "# k0s_managed=true"


class K0sRules(object):
    """What a k0s release does with the drop-in folder. ``version`` e.g. 'v1.36.3+k0s.0'."""

    def __init__(self, version):
        self.version = _v(version)
        row = K0S_RELEASES[0]
        if self.version is not None:
            for r in K0S_RELEASES:
                if self.version >= r[0]:
                    row = r
        _since, self.containerd, self.drop_in_version, self.loading, self.marker_rule = row
        self.known = self.version is not None

    def describe(self):
        return "k0s %s" % (vstr(self.version) or "(version unknown)")

    def refusal(self):
        """None when this k0s can load our drop-in, else why not and what fixes it."""
        if not self.known:
            return None
        if self.loading == "unsupported":
            return ("%s has no /etc/k0s/containerd.d drop-in support (added in k0s 1.27.1); upgrade k0s to "
                    "1.27.5 or later first" % self.describe())
        if self.loading == "concatenate":
            return ("%s appends CRI drop-ins to its default CRI config instead of merging them, so a drop-in "
                    "that repeats a table the default defines (runtimes.runc) makes containerd's config invalid "
                    "(fixed in k0s 1.27.5 and 1.28.2); upgrade k0s to 1.27.5 / 1.28.2 or later first"
                    % self.describe())
        return None

    def containerd_rules(self):
        return ContainerdRules(self.containerd)

    def bundles(self, containerd_version):
        """True when ``containerd_version`` is of the series this k0s bundles (major.minor)."""
        got = _v(containerd_version)
        return self.containerd is None or got is None or got[:2] == self.containerd[:2]

    def drop_in_problem(self, data, name):
        """Why this k0s would reject a drop-in (plain data), or None. 1.36's pre-flight: version must be the
        integer 3 and no plugins."io.containerd.grpc.v1.cri" section (k0s source, ValidateConfigFile);
        a drop-in of another version than this k0s's containerd config is not merged as meant."""
        if not self.known or self.drop_in_version is None:
            return None
        version = data.get("version")
        plugins = data.get("plugins") if isinstance(data.get("plugins"), dict) else {}
        if self.loading == "containerd_imports":
            # a file without a version key passes the check (k0s reads it as the main file's version)
            if version is not None and (version != 3 or isinstance(version, bool)):
                return ("%s: version = %r, but %s accepts only version 3 drop-ins (its pre-flight check stops the "
                        "worker)" % (name, version, self.describe()))
            if CRI_PATHS[2][1] in plugins:
                return ("%s has a plugins.\"%s\" section, which %s rejects (its pre-flight check stops the worker)"
                        % (name, CRI_PATHS[2][1], self.describe()))
            return None
        if CRI_PATHS[3][1] in plugins or (version is not None and version != self.drop_in_version):
            return ("%s is a version %s drop-in; %s merges version %d drop-ins"
                    % (name, version, self.describe(), self.drop_in_version))
        return None

    def is_managed(self, text):
        """True while k0s writes containerd.toml itself: no file, or the marker as this release reads it
        (1.27-1.29 any line containing it, 1.30-1.35 any line equal to it, 1.36 the first line only; older
        releases also accept the md5 of the pre-1.27 default file, not modelled). Unknown release: the
        strictest rule (first line)."""
        if text is None:
            return True
        lines = [x.strip() for x in text.split("\n")]
        rule = self.marker_rule if self.known else "first_line"
        if rule == "any_line":
            return any(K0S_MARKER.replace(" ", "") in x.replace(" ", "") for x in lines)
        if rule == "equal_line":
            return any(x == K0S_MARKER for x in lines)
        first = [x for x in lines if x]
        return bool(first) and first[0] == K0S_MARKER


def k0s(version):
    return K0sRules(version)
