import uvicorn

from crm_console.app import create_console
from crm_console.settings import ConsoleSettings
from crm_shared.logging import configure_logging


def main() -> None:
    settings = ConsoleSettings()
    configure_logging("console", settings.log_level)
    uvicorn.run(create_console(settings), host=settings.host, port=settings.port, log_config=None, access_log=False)


if __name__ == "__main__":
    main()
