"""SavedModel export, TF Serving configs, the embedded server and clients."""
import common

common.quiet_import_tensorflow()
