from crm_shared.service import serve
from crm_support.app import create_service
from crm_support.settings import SupportSettings


def main() -> None:
    settings = SupportSettings()
    serve(create_service(settings), settings)


if __name__ == "__main__":
    main()
