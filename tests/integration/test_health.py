"""Every service answers /healthz and /readyz; the gateway on its REST port."""

import unittest

import harness
from harness import Case, call


class Health(Case):
    def test_side_ports(self):
        """GET <side port>/healthz and /readyz of every gRPC service → 200, no key needed."""
        st = harness.stack()
        for svc in harness.stackmod.SERVICES:
            if svc == "gateway":
                continue
            for path in ("/healthz", "/readyz"):
                with self.subTest(svc=svc, path=path):
                    r = call("GET", path, base=st.metrics_url(svc))
                    self.assertStatus(r, 200)

    def test_gateway(self):
        """GET /healthz and /readyz on the REST port without a key → 200."""
        for path in ("/healthz", "/readyz"):
            with self.subTest(path=path):
                self.assertStatus(call("GET", path), 200)

    def test_side_port_unknown_path(self):
        """GET <side port>/nope → 404 JSON."""
        st = harness.stack()
        r = call("GET", "/nope", base=st.metrics_url("retriever"))
        self.assertStatus(r, 404)
        self.assertIsNotNone(r.json, "side port 404 is not JSON: %r" % r)


if __name__ == "__main__":
    unittest.main()
