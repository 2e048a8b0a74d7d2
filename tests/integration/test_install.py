"""make install, the systemd unit and the man pages.

`make install DESTDIR=tmp` runs against the build directory under test
(REDRIVE_BUILD, with the MODE it was built in, and `-o all`, so nothing is
rebuilt) and
must lay out exactly the files DESIGN.md lists.  The unit is checked with
`systemd-analyze verify` where the machine has it; the man pages must
render with `man -l` and `groff -ww` without a single warning."""

import os
import re
import shutil
import stat
import subprocess

import pytest

from conftest import BUILD, REPO

MANPAGES = ["man/redrive.1", "man/redrive.conf.5", "man/redrived.8",
            "man/redrive-sendmail.8"]

EXPECTED = {
    # path: (kind, mode)
    "usr/local/sbin/redrived": ("f", 0o755),
    "usr/local/bin/redrive": ("f", 0o755),
    "usr/local/sbin/redrive-sendmail": ("f", 0o755),
    "usr/local/share/man/man1/redrive.1": ("f", 0o644),
    "usr/local/share/man/man5/redrive.conf.5": ("f", 0o644),
    "usr/local/share/man/man8/redrived.8": ("f", 0o644),
    "usr/local/share/man/man8/redrive-sendmail.8": ("f", 0o644),
    "usr/local/lib/systemd/system/redrived.service": ("f", 0o644),
    "etc/redrive/redrive.conf": ("f", 0o640),
    "var/lib/redrive": ("d", 0o750),
}


def make_install(destdir, *extra):
    mode = "debug"
    try:
        with open(os.path.join(BUILD, ".mode")) as f:
            mode = f.read().strip() or mode
    except OSError:
        pass
    # -o all: install what the build directory holds, never rebuild it
    # (the rest of the suite is running those very binaries).
    cmd = ["make", "-s", "--no-print-directory", "-C", REPO, "-o", "all",
           "install",
           "B=" + os.path.abspath(BUILD), "MODE=" + mode,
           "DESTDIR=" + str(destdir)] + list(extra)
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=600)
    out = p.stdout.decode() + p.stderr.decode()
    assert p.returncode == 0, out
    return out


def tree(root):
    """Every file, link and leaf directory under root, relative."""
    found = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files + [d for d in dirs
                             if os.path.islink(os.path.join(dirpath, d))]:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            kind = "l" if stat.S_ISLNK(st.st_mode) else "f"
            found[os.path.relpath(p, root)] = (kind, stat.S_IMODE(st.st_mode))
        if not dirs and not files:
            st = os.lstat(dirpath)
            found[os.path.relpath(dirpath, root)] = (
                "d", stat.S_IMODE(st.st_mode))
    return found


def test_install_lays_out_every_file(tmp_path):
    dest = tmp_path / "root"
    make_install(dest, "PREFIX=/usr/local")
    assert tree(dest) == EXPECTED
    for name in ("redrived", "redrive-sendmail"):
        with open(os.path.join(BUILD, name), "rb") as a, \
                open(dest / "usr/local/sbin" / name, "rb") as b:
            assert a.read() == b.read(), name
    with open(os.path.join(REPO, "etc/redrive.conf"), "rb") as a:
        assert (dest / "etc/redrive/redrive.conf").read_bytes() == a.read()
    for page in MANPAGES:
        sect = page.rsplit(".", 1)[1]
        installed = dest / ("usr/local/share/man/man%s" % sect) / \
            os.path.basename(page)
        with open(os.path.join(REPO, page), "rb") as a:
            assert installed.read_bytes() == a.read(), page
    p = subprocess.run([str(dest / "usr/local/sbin/redrived"), "--version"],
                       stdout=subprocess.PIPE, timeout=30)
    assert p.returncode == 0 and p.stdout.startswith(b"redrived ")


def test_unit_execstart_follows_prefix(tmp_path):
    make_install(tmp_path / "a", "PREFIX=/usr/local")
    unit = (tmp_path / "a/usr/local/lib/systemd/system/redrived.service")
    lines = unit.read_text().splitlines()
    assert "ExecStart=/usr/local/sbin/redrived -c /etc/redrive/redrive.conf" \
        in lines
    make_install(tmp_path / "b", "PREFIX=/opt/redrive")
    unit = tmp_path / "b/opt/redrive/lib/systemd/system/redrived.service"
    lines = unit.read_text().splitlines()
    assert "ExecStart=/opt/redrive/sbin/redrived -c /etc/redrive/redrive.conf"\
        in lines
    assert not any("/usr/local" in ln for ln in lines
                   if not ln.startswith("#"))
    assert os.access(tmp_path / "b/opt/redrive/sbin/redrived", os.X_OK)
    # The configuration stays in /etc whatever the prefix.
    assert (tmp_path / "b/etc/redrive/redrive.conf").is_file()
    # The unit's hardening and state directory are there.
    for want in ("User=redrive", "StateDirectory=redrive",
                 "NoNewPrivileges=yes", "ProtectSystem=strict",
                 "PrivateTmp=yes", "ExecReload=/bin/kill -HUP $MAINPID",
                 "CapabilityBoundingSet="):
        assert want in lines, want


def test_second_install_keeps_the_config(tmp_path):
    dest = tmp_path / "root"
    make_install(dest)
    conf = dest / "etc/redrive/redrive.conf"
    conf.write_text("[relay]\nlisten = 127.0.0.1:2600\n")
    os.chmod(conf, 0o600)
    out = make_install(dest)
    assert "keeping the existing /etc/redrive/redrive.conf" in out
    assert conf.read_text() == "[relay]\nlisten = 127.0.0.1:2600\n"
    assert stat.S_IMODE(os.stat(conf).st_mode) == 0o600


def test_link_sendmail(tmp_path):
    make_install(tmp_path / "plain")
    assert not os.path.lexists(tmp_path / "plain/usr/local/sbin/sendmail")
    dest = tmp_path / "linked"
    make_install(dest, "LINK_SENDMAIL=yes")
    link = dest / "usr/local/sbin/sendmail"
    assert os.path.islink(link)
    assert os.readlink(link) == "redrive-sendmail"
    want = dict(EXPECTED)
    want["usr/local/sbin/sendmail"] = ("l", stat.S_IMODE(
        os.lstat(link).st_mode))
    assert tree(dest) == want
    p = subprocess.run([str(link), "--version"], stdout=subprocess.PIPE,
                       timeout=30)
    assert p.returncode == 0 and p.stdout.startswith(b"redrive-sendmail ")


def test_systemd_analyze_verify(tmp_path):
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed on this machine")
    dest = tmp_path / "root"
    make_install(dest)
    # verify wants ExecStart's binary to exist and the Documentation= man
    # pages to be found: point both at the DESTDIR copy.
    unit = (dest / "usr/local/lib/systemd/system/redrived.service")
    text = unit.read_text().replace("ExecStart=/usr/local/sbin/",
                                    "ExecStart=%s/usr/local/sbin/" % dest)
    vdir = tmp_path / "verify"
    vdir.mkdir()
    (vdir / "redrived.service").write_text(text)
    env = dict(os.environ, MANPATH=str(dest / "usr/local/share/man"),
               SYSTEMD_LOG_LEVEL="notice")
    p = subprocess.run(["systemd-analyze", "verify",
                        str(vdir / "redrived.service")],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       env=env, timeout=120)
    out = p.stdout.decode("utf-8", "replace")
    if p.returncode != 0 and re.search(
            r"Failed to (connect|initialize)|No such file or directory.*"
            r"(bus|systemd)", out) and "redrived.service" not in out:
        pytest.skip("systemd-analyze cannot run here: " + out.strip())
    assert p.returncode == 0, out
    assert "redrived.service" not in out, out


@pytest.mark.parametrize("page", MANPAGES)
def test_man_page_renders_without_warnings(page):
    path = os.path.join(REPO, page)
    if shutil.which("groff") is None or shutil.which("man") is None:
        pytest.skip("man and groff are not installed (man-db, groff-base)")
    env = dict(os.environ, MANWIDTH="80", LC_ALL="C.UTF-8")
    p = subprocess.run(["man", "--warnings", "-l", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stderr == b"", p.stderr.decode()
    assert b"SEE ALSO" in p.stdout
    p = subprocess.run(["groff", "-ww", "-z", "-man", path],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=60)
    assert p.returncode == 0 and p.stderr == b"", p.stderr.decode()


def test_config_man_page_names_every_key():
    """redrive.conf.5 documents every key of etc/redrive.conf."""
    with open(os.path.join(REPO, "etc/redrive.conf")) as f:
        conf = f.read()
    p = subprocess.run(["man", "-l", os.path.join(REPO,
                                                  "man/redrive.conf.5")],
                       stdout=subprocess.PIPE, timeout=60,
                       env=dict(os.environ, MANWIDTH="200"))
    text = re.sub(r".\x08", "", p.stdout.decode("utf-8", "replace"))
    section = None
    missing = []
    for ln in conf.splitlines():
        m = re.match(r"^\[(\w+)\]", ln)
        if m:
            section = m.group(1)
            assert "SECTION [%s]" % section in text, section
            continue
        m = re.match(r"^#(\w+) =", ln)
        if m and not re.search(r"(^|[ ,])%s =" % m.group(1), text, re.M):
            missing.append("[%s] %s" % (section, m.group(1)))
    assert not missing, missing


def test_help_names_the_man_pages():
    for cmd, page in ((["redrived", "--help"], "redrived(8)"),
                      (["redrive", "--help"], "redrive(1)"),
                      (["redrive-sendmail", "--help"],
                       "redrive-sendmail(8)")):
        p = subprocess.run([os.path.join(BUILD, cmd[0])] + cmd[1:],
                           stdout=subprocess.PIPE, timeout=30)
        assert p.returncode == 0
        assert page in p.stdout.decode(), (cmd, p.stdout)
