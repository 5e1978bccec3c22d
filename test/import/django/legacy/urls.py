from django.http import HttpResponse, JsonResponse
from django.urls import path


def login(request):
    """Stores a user and a cart of `items` entries; `expiry` calls set_expiry(seconds)."""
    request.session['user'] = request.GET.get('user', 'alice')
    request.session['cart'] = ['item-%d' % i for i in range(int(request.GET.get('items', '2')))]
    request.session['note'] = 'caf\u00e9 \u2713'
    if 'expiry' in request.GET:
        request.session.set_expiry(int(request.GET['expiry']))
    return HttpResponse('ok')


def whoami(request):
    return JsonResponse({'user': request.session.get('user')})


def version(request):
    import django

    return JsonResponse({'version': list(django.VERSION[:2])})


urlpatterns = [
    path('login/', login),
    path('whoami/', whoami),
    path('version/', version),
]
