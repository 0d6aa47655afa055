from data_processing.utils.unrecoverable import UnrecoverableException
from data_processing.utils.config import DPKConfig, add_if_missing
from data_processing.utils.cli_utils import GB, KB, MB, CLIArgumentProvider, str2bool
from data_processing.utils.log import get_logger
from data_processing.utils.params_utils import ParamsUtils
from data_processing.utils.transform_utils import TransformUtils, RANDOM_SEED, LOCAL_TO_DISK
from data_processing.utils.pipinstaller import PipInstaller
from data_processing.utils.transform_configurator import TransformRuntime, TransformsConfiguration
