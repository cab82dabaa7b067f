"""Every /metrics scrape is valid Prometheus text (promtool check metrics)."""

import unittest

import harness
from harness import Case, call


class Metrics(Case):
    @classmethod
    def setUpClass(cls):
        # Some traffic so the families have samples.
        harness.fact_document()
        harness.query(harness.FACT_QUESTION)

    def scrape(self, svc):
        r = call("GET", "/metrics", base=harness.stack().metrics_url(svc))
        self.assertStatus(r, 200)
        self.assertIn("text/plain", r.header("Content-Type") or "")
        return r.body.decode("utf-8")

    def test_promtool(self):
        """GET /metrics of every service (gateway: REST port) → passes
        `promtool check metrics`."""
        for svc in harness.stackmod.SERVICES:
            with self.subTest(svc=svc):
                text = self.scrape(svc)
                self.assertTrue(text.strip(), "empty scrape")
                rc, out = harness.promtool_check(text)
                self.assertEqual(rc, 0, "promtool on %s:\n%s" % (svc, out[:3000]))

    def test_grpc_server_families(self):
        """The retriever, served Search calls, exposes grpc_server_handled_total
        and grpc_server_handling_seconds."""
        text = self.scrape("retriever")
        self.assertIn("grpc_server_handled_total{", text)
        self.assertIn('grpc_method="Search"', text)
        self.assertIn("grpc_server_handling_seconds_bucket{", text)

    def test_gateway_families(self):
        """The gateway exposes http_requests_total and grpc_client_handled_total."""
        text = self.scrape("gateway")
        self.assertIn("http_requests_total{", text)
        self.assertIn("http_request_duration_seconds_bucket{", text)
        self.assertIn("grpc_client_handled_total{", text)


if __name__ == "__main__":
    unittest.main()
