"""Developer tools of the checkout, not shipped in the package (run from the repository root).

- ``launcher.py``, ``azurite.py``, ``s3server.py``: start Azurite and the S3 test server (moto)
  as child processes on loopback, for the tests, the benchmarks and ``make demo-azure``.
- ``chromium.py``: headless Chromium over the DevTools protocol (the report's tests and shot).
- ``docgen.py``: ``make docs`` renders ``docs/cli.md`` and the key tables of
  ``docs/configuration.md``; ``report_shot.py``: the report's screenshot in the docs;
  ``demo_azure.py``: ``make demo-azure``.
- ``package.json``: Azurite, installed by ``npm ci --prefix tools`` into ``node_modules/``.
"""
