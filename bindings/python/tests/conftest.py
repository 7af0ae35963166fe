def pytest_configure(config):
    config.addinivalue_line("markers", "ray: runs examples/ray_embed.py on a local Ray cluster")
