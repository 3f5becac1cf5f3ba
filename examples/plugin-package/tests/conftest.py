pytest_plugins = ["lossatlas.testing"]
