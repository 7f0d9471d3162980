"""The applications; each folder exposes `APP`, an `common.app.App`."""
import common

common.quiet_import_tensorflow()
