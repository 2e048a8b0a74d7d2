"""The forwarder speaks HTTPS with verification always on: against the
simulator serving TLS with a throw-away certificate, [mailgun] ca_file
makes it trusted and the message is sent; without it the certificate is
refused and the message stays queued (nothing is sent unverified)."""

import json
import os
import subprocess
import time

from mailgun_fixtures import API_KEY, DOMAIN, run_simulator


def make_cert(tmp):
    cert = os.path.join(tmp, "cert.pem")
    key = os.path.join(tmp, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048",
                    "-nodes", "-subj", "/CN=localhost", "-addext",
                    "subjectAltName=DNS:localhost", "-days", "1",
                    "-keyout", key, "-out", cert],
                   check=True, capture_output=True)
    return cert, key


def send_one(d, rcpt):
    s = d.smtp()
    s.sendmail("app@example.com", [rcpt],
               b"Subject: over tls\r\n\r\nbody\r\n")
    s.quit()


def wait_row(d, pred, timeout):
    deadline = time.monotonic() + timeout
    rows = []
    while time.monotonic() < deadline:
        rows = d.log_json()
        if rows and pred(rows[0]):
            return rows[0]
        time.sleep(0.1)
    raise AssertionError("timed out; rows %r\nlog:\n%s" % (rows, d.log()))


def overrides(sim, **extra):
    port = sim.base_url.rsplit(":", 1)[1]
    mg = {"api_key": API_KEY, "domain": DOMAIN,
          "api_base": "https://localhost:" + port,
          "retry_min": "100ms", "retry_max": "1s", "timeout": "2s"}
    mg.update(extra)
    return {"mailgun": mg}


def test_https_with_ca_file(daemon, tmp_path):
    cert, key = make_cert(str(tmp_path))
    with run_simulator("--tls-cert", cert, "--tls-key", key) as sim:
        d = daemon(overrides=overrides(sim, ca_file=cert))
        send_one(d, "tls@example.net")
        row = wait_row(d, lambda r: r["status"] == "sent", 15)
        assert row["mailgun_id"] and "<" not in row["mailgun_id"], row


def test_https_untrusted_certificate_stays_queued(daemon, tmp_path):
    cert, key = make_cert(str(tmp_path))
    with run_simulator("--tls-cert", cert, "--tls-key", key) as sim:
        d = daemon(overrides=overrides(sim))
        send_one(d, "untrusted@example.net")
        time.sleep(2.0)
        row = d.log_json()[0]
        assert row["status"] == "queued", row
        assert row["mailgun_id"] is None, row
        rc, out, _ = d.cli("show", str(row["id"]), "--json")
        assert rc == 0
        sends = json.loads(out.decode().splitlines()[0])["sends"]
        assert sends and all(s["mailgun_id"] is None for s in sends), sends
