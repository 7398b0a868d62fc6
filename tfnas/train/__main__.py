from tfnas import cli
from tfnas.train import command

__doc__ = command.__doc__  # `--help` prints the command's usage

if __name__ == "__main__":
    command.define_command_flags()
    cli.run(command.main)  # flags are checked before TensorFlow loads
